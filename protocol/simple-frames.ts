/**
 * Hand-written MessagePack for the hottest message shapes: what MessageCodec (msgpackr with the
 * codec's options) produces for them, byte for byte, without msgpackr, the plain-check or an
 * intermediate object per frame. Profiles put msgpackr plus the check at ~20 % of the daemon's
 * and the client's CPU for point operations; these shapes are nearly all of that traffic.
 *
 * Where: replies `{ id, result }` (get, exists, the writes, getBatch, scan batches) are sized,
 * written and read in simple-replies.ts; requests `{ id, op, key[, value] }`, `{ id, op, keys }`
 * and `{ id, op, entries }` in simple-requests.ts. This module holds what both share: the field
 * names they write as literals and the ids they take. The MessagePack forms themselves are in
 * msgpack-forms.ts; engine-encoded arrays in packed-array.ts.
 *
 * Invariants (of both modules):
 * - The writers produce exactly MessageCodec.encode's frame for the same message (a test compares
 *   them on random messages), so the wire stays one format whichever path wrote it.
 * - The readers return null for anything they do not fully recognise, including trailing
 *   bytes; the caller then decodes with MessageCodec. So they never accept a body MessageCodec
 *   would refuse, and decode what they accept exactly as MessageCodec would (a `bin` is a view
 *   of the body, as there, unless the caller asks for copies), but for a scan batch's entries,
 *   which are checked and returned packed: unpacked (`toEntries`), they are MessageCodec's pairs.
 * - Pure: no I/O; the writers write only inside the range they sized (for a request, the
 *   bound), and a request's frame header gives the bytes actually written.
 */

import { FIXSTR } from './msgpack-forms.js';

/** `id` and `entries` as fixstr map keys (a reply's scan batch and a putBatch request both
 * carry `entries`). */
export const KEY_ID = Buffer.from([FIXSTR | 2, 0x69, 0x64]);
export const KEY_ENTRIES = Buffer.from([FIXSTR | 7, ...Buffer.from('entries')]);

/** An id these frames carry: MessageCodec writes one up to 32 bits as a uint. */
export function isIdNumber(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff;
}
