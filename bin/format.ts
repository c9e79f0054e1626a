/**
 * Human-readable rendering of daemon statistics for `toondb stats`.
 * Pure functions of their input; no I/O.
 */

import type { StatsResult } from '../protocol/messages.js';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'], [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']] as const;
  const shown = parts.filter(([n], i) => n > 0 || i === parts.length - 1);
  return shown.map(([n, u]) => `${n}${u}`).join(' ');
}

/** `n noun`, the noun plural unless n is 1 ('1 fsync', '2 fsyncs'; `plural` for irregular ones). */
function counted(n: number | bigint, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 || n === 1n ? noun : plural}`;
}

export function renderStats(s: StatsResult): string {
  const rows: [string, string][] = [
    ['version', `${s.version} (pid ${s.pid}, up ${formatDuration(s.uptimeMs)})`],
    ['socket / data', `${s.socketPath}  ${s.dataDir}`],
    ['durability', `${s.durability}; ${counted(s.durable.syncs, 'fsync')}, ${counted(s.durable.pendingWrites, 'write')} pending` +
      // Absent in the stats of a daemon older than this client.
      (s.durable.watermarkFailures ? `; ${counted(s.durable.watermarkFailures, 'watermark write')} failed` : '')],
    // `max` and `byUid` are absent in the stats of a daemon older than this client.
    ['connections', `${s.connections.active} active${typeof s.connections.max === 'number' ? ` (at most ${s.connections.max})` : ''}, ${s.connections.total} total, ${s.connections.refused} refused` +
      (s.connections.byUid ? `; by uid: ${Object.entries(s.connections.byUid).map(([uid, n]) => `${uid} ${n}`).join(', ') || 'none'}` : '')],
    ['requests', `${s.requests.total} total, ${counted(s.requests.errors, 'error')}, ${s.requests.fromMemory} from memory; ` +
      Object.entries(s.requests.byFamily).map(([family, n]) => `${family} ${n}`).join(', ')],
    // `replies` and the waiting counts are absent in the stats of a daemon older than this client.
    ['bytes', `${formatBytes(s.bytes.in)} in, ${formatBytes(s.bytes.out)} out, ${formatBytes(s.bytes.inFlight)} of requests in flight` +
      (typeof s.bytes.inFlightWaiting === 'number' ? ` (${s.bytes.inFlightWaiting} waiting)` : '') +
      (typeof s.bytes.replies === 'number' ? `, ${formatBytes(s.bytes.replies)} of replies unread or reserved` : '') +
      (typeof s.bytes.repliesWaiting === 'number' ? ` (${s.bytes.repliesWaiting} waiting)` : '')],
    ['transactions', `${s.transactions.active} active holding ${formatBytes(s.transactions.bytes)}, ${s.transactions.committed} committed, ${s.transactions.aborted} aborted, ${counted(s.transactions.conflicts, 'conflict')}`],
    ['cursors', `${s.cursors.open} open, ${counted(s.cursors.readAhead, 'batch', 'batches')} read ahead, ${s.cursors.readAheadBytes} bytes held ahead`],
    ['engine', `~${s.engine.approximateKeys} keys, ${formatBytes(s.engine.diskBytes)} on disk, journal ${formatBytes(s.engine.journalBytes)} in ${counted(s.engine.journalCount, 'file')}, seqno ${s.engine.seqno}; row cache ${s.engine.rowCacheRows} rows, ${formatBytes(s.engine.rowCacheBytes)}, ${s.engine.rowCacheQueuedKeys} keys queued`],
    ['checkpoint', s.checkpoint.last ? `lsn ${s.checkpoint.last.lsn} at ${new Date(s.checkpoint.last.atMs).toISOString()} (${s.checkpoint.last.durationMs.toFixed(1)} ms)` : 'none since start'],
    ['latency', `p50 ${s.latency.p50Ms} ms, p90 ${s.latency.p90Ms} ms, p99 ${s.latency.p99Ms} ms, max ${s.latency.maxMs} ms (${s.latency.samples} samples)`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}
