/**
 * What the advertised limits (ServerLimits) imply for messages: the largest reply a request can
 * get, the largest replies of one engine call, and the relations the limits must keep for every
 * message to fit in a frame and every budget to admit one maximal request.
 *
 * Responsibility: derived bounds only; the limits themselves are named in limits.ts.
 * Invariants: the compiled-in limits keep every relation (asserted on import); a daemon's
 * configured ones are checked by daemon/config.ts with brokenLimitRelation.
 */

import {
  DEFAULT_SERVER_LIMITS, ENGINE_BATCH_REQUESTS_MAX, ENGINE_CALL_OUTPUT_BYTES_MAX, ENVELOPE_BYTES_MAX, FRAME_HEADER_BYTES,
  LIST_PATH_NEXT_BYTES_PAST_KEY, type ServerLimits,
} from './limits.js';

/** Bytes a listPath page adds around its names: the `{ children, next }` map, and `next`'s header. */
const LIST_PATH_PAGE_FIELDS_BYTES = 32;

/** The largest reply a request of `op` can get under `limits`, frame header included: what the
 * daemon reserves for it before its engine call (REPLY_BYTES_DAEMON_MAX). Requests that return
 * no data get an envelope's worth (a result or a coded error). */
export function replyBytesMaxOf(op: string, limits: ServerLimits): number {
  const frame = FRAME_HEADER_BYTES + limits.frameBytesMax;
  switch (op) {
    case 'get':
      return Math.min(frame, FRAME_HEADER_BYTES + limits.valueBytesMax + ENVELOPE_BYTES_MAX);
    case 'getBatch':
      return Math.min(frame, FRAME_HEADER_BYTES + limits.batchBytesMax + limits.batchItemsMax * 16 + ENVELOPE_BYTES_MAX);
    case 'listPath':
      return Math.min(frame, FRAME_HEADER_BYTES + listPathPageBytesMax(limits));
    case 'scan':
    case 'scanNext':
      return frame; // a batch may pass scanBatchBytesMax by one maximal entry
    default:
      return FRAME_HEADER_BYTES + ENVELOPE_BYTES_MAX;
  }
}

/** The largest replies of one engine call the engine bounds (ENGINE_CALL_OUTPUT_BYTES_MAX): it
 * stops once its data reach that bound, after the op that passed it (one maximal reply), and
 * its ENGINE_BATCH_REQUESTS_MAX replies add their envelopes and per-item headers, which the
 * engine does not count. */
export function engineCallReplyBytesMax(limits: ServerLimits): number {
  return ENGINE_CALL_OUTPUT_BYTES_MAX + FRAME_HEADER_BYTES + limits.frameBytesMax
    + ENGINE_BATCH_REQUESTS_MAX * (ENVELOPE_BYTES_MAX + limits.batchItemsMax * 16);
}

/** The largest listPath reply body: names of at most batchBytesMax bytes (with their headers,
 * as the engine counts them), a `next` of at most a key and LIST_PATH_NEXT_BYTES_PAST_KEY, the
 * page's fields and the envelope. */
function listPathPageBytesMax(limits: ServerLimits): number {
  return limits.batchBytesMax + limits.keyBytesMax + LIST_PATH_NEXT_BYTES_PAST_KEY + LIST_PATH_PAGE_FIELDS_BYTES + ENVELOPE_BYTES_MAX;
}

/** The relations between advertised limits that every message relies on; the first one broken,
 * or null. Checked for the compiled-in limits on import and for a daemon's configured ones
 * (daemon/config.ts), which may each be lowered but must still fit together. */
export function brokenLimitRelation(limits: ServerLimits): string | null {
  const { frameBytesMax, keyBytesMax, valueBytesMax, batchBytesMax, batchItemsMax, scanBatchBytesMax, scanBatchItemsMax } = limits;
  if (keyBytesMax + valueBytesMax + ENVELOPE_BYTES_MAX > frameBytesMax) return 'a maximal put must fit in one frame';
  if (batchBytesMax + batchItemsMax * 16 + ENVELOPE_BYTES_MAX > frameBytesMax) {
    return 'a maximal batch or getBatch reply (with per-item msgpack headers) must fit in one frame';
  }
  if (listPathPageBytesMax(limits) > frameBytesMax) return 'a maximal listPath page (names and next) must fit in one frame';
  if (scanBatchBytesMax + keyBytesMax + valueBytesMax + scanBatchItemsMax * 16 + ENVELOPE_BYTES_MAX > frameBytesMax) {
    return 'a scan batch that overshoots by one maximal entry must fit in one frame';
  }
  if (keyBytesMax + valueBytesMax > batchBytesMax) return 'a batch can carry at least one maximal entry (key and value)';
  if (limits.txnBytesMax < batchBytesMax) return 'a transaction can hold at least one maximal batch';
  if (limits.requestBytesInFlightDaemonMax < frameBytesMax) return 'a maximal frame fits under the daemon-wide request bytes in flight';
  if (limits.txnBytesDaemonMax < limits.txnBytesMax) return 'one maximal transaction fits under the daemon-wide transaction bytes';
  if (limits.txnsDaemonMax < limits.txnsPerConnectionMax) return 'one connection\'s open transactions fit under the daemon-wide number';
  if (limits.cursorsDaemonMax < limits.cursorsPerConnectionMax) return 'one connection\'s open cursors fit under the daemon-wide number';
  if (limits.replyBytesDaemonMax < engineCallReplyBytesMax(limits)) {
    return 'the largest replies of one engine call fit under the daemon-wide reply bytes';
  }
  return null;
}

const broken = brokenLimitRelation(DEFAULT_SERVER_LIMITS);
if (broken !== null) throw new Error(`toondb limits are inconsistent: ${broken}`);
