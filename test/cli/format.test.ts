// `toondb stats` as text: counts read as English ('1 fsync', '2 fsyncs'), sizes in binary units.
import { describe, expect, it } from 'vitest';
import { formatBytes, renderStats } from '../../bin/format.js';
import type { StatsResult } from '../../protocol/messages.js';

function stats(n: number): StatsResult {
  return {
    version: '1.0.0', pid: 7, uptimeMs: 90_061_000, socketPath: '/tmp/s.sock', dataDir: '/tmp/d', durability: 'sync',
    durable: { syncs: n, lastSyncMs: 0, pendingWrites: n },
    connections: { active: n, total: n, refused: n, max: 1024 },
    requests: { total: n, errors: n, fromMemory: n, byFamily: { kv: n } },
    bytes: { in: 1536, out: 0, inFlight: 0, inFlightWaiting: 0, replies: 0, repliesWaiting: 0 },
    transactions: { active: n, bytes: 0, committed: n, aborted: n, conflicts: n },
    cursors: { open: n, readAhead: n, readAheadBytes: 0 },
    engine: { approximateKeys: n, diskBytes: 0, journalBytes: 0, journalCount: n, writeBufferBytes: 0, seqno: 1n, rowCacheRows: 0, rowCacheBytes: 0, rowCacheQueuedKeys: 0 },
    checkpoint: { last: null },
    latency: { p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0, samples: 0 },
  } as unknown as StatsResult;
}

describe('renderStats', () => {
  it('writes one of a thing in the singular and other counts in the plural', () => {
    const one = renderStats(stats(1));
    expect(one).toContain('sync; 1 fsync, 1 write pending');
    expect(one).toContain('1 total, 1 error, 1 from memory');
    expect(one).toContain('1 aborted, 1 conflict');
    expect(one).toContain('1 open, 1 batch read ahead');
    expect(one).toContain('in 1 file,');
    const two = renderStats(stats(2));
    expect(two).toContain('sync; 2 fsyncs, 2 writes pending');
    expect(two).toContain('2 errors');
    expect(two).toContain('2 conflicts');
    expect(two).toContain('2 batches read ahead');
    expect(two).toContain('in 2 files,');
    expect(renderStats(stats(0))).toContain('0 fsyncs, 0 writes pending');
    expect(one).toContain('up 1d 1h 1m 1s');
  });

  it('lists the connections each uid holds, and leaves the list out for a daemon that sends none', () => {
    const withUids = stats(3);
    withUids.connections.byUid = { 0: 1, 1000: 2 };
    expect(renderStats(withUids)).toContain('3 active (at most 1024), 3 total, 3 refused; by uid: 0 1, 1000 2');
    withUids.connections.byUid = {};
    expect(renderStats(withUids)).toContain('3 refused; by uid: none');
    expect(renderStats(stats(3))).toMatch(/3 refused\s*$/m);
  });

  it('says when watermark writes failed, and nothing when none did', () => {
    const failing = stats(2);
    failing.durable.watermarkFailures = 3;
    expect(renderStats(failing)).toContain('sync; 2 fsyncs, 2 writes pending; 3 watermark writes failed');
    failing.durable.watermarkFailures = 0;
    expect(renderStats(failing)).not.toContain('watermark');
  });

  it('sizes bytes in binary units', () => {
    expect([formatBytes(0), formatBytes(1536), formatBytes(5 * 1024 ** 3)]).toEqual(['0 B', '1.5 KiB', '5.0 GiB']);
  });

  it('shows the reply bytes a daemon reports, and leaves them out for an older daemon that does not', () => {
    const current = stats(1);
    current.bytes.replies = 3 * 1024 * 1024;
    current.bytes.repliesWaiting = 2;
    expect(renderStats(current)).toContain('0 B of requests in flight (0 waiting), 3.0 MiB of replies unread or reserved (2 waiting)');
    const older = stats(1);
    const bytes = older.bytes as { replies?: number; inFlightWaiting?: number; repliesWaiting?: number };
    delete bytes.replies;
    delete bytes.inFlightWaiting;
    delete bytes.repliesWaiting;
    const text = renderStats(older);
    expect(text).toContain('0 B of requests in flight\n');
    expect(text).not.toContain('undefined');
  });
});
