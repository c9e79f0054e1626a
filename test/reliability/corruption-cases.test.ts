// Recovery, case by case: one deterministic kind of damage per test, after a daemon (durability
// sync) took a few acknowledged single-put commits and was SIGKILLed. Each test says what
// toondbd must do; the regression tests are named after the defects the random rounds in
// corruption.test.ts found (see test/RELIABILITY.md).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDaemon, type TestDaemon } from '../helpers/daemon.js';
import { engineFiles, fileSize, flipBit, parseJournal, parseVersion, readJournalHead, tornBatch, truncateFile, writeAt } from '../helpers/fjall-files.js';
import { codeOfError, connect, expectCodedRefusal, START_CODES, startWithin } from '../helpers/recovery.js';

describe('recovery, case by case', () => {
  /** Puts c/0 = values[0], c/1 = values[1], … (one commit each). */
  const asWrites = (values: string[]) => values.map((value, i) => [`c/${i}`, value] as [string, string]);

  /**
   * A killed daemon whose journal holds one single-put commit per write. The caller disposes
   * of it; if making it fails, it is disposed of here (no daemon or temp dir is left behind).
   */
  async function killedWith(writes: [string, string][], options: { checkpointAfter?: number } = {}) {
    const daemon = createDaemon();
    try {
      await daemon.start();
      const client = await connect(daemon);
      try {
        for (const [i, [key, value]] of writes.entries()) {
          await client.put(key, value);
          if (options.checkpointAfter === i + 1) await client.checkpoint();
        }
      } finally {
        await client.close();
      }
      await daemon.kill();
      const dbDir = join(daemon.dataDir, 'db');
      const journalPath = engineFiles(dbDir).journals.at(-1)!;
      return { daemon, dbDir, journalPath, journal: parseJournal(readJournalHead(journalPath)) };
    } catch (error) {
      await daemon.dispose();
      throw error;
    }
  }

  async function readKeys(daemon: TestDaemon, keys: string[]): Promise<(string | null)[]> {
    const client = await connect(daemon);
    try {
      return (await client.getBatch(keys)).map((v) => (v === null ? null : v.toString()));
    } finally {
      await client.close();
    }
  }

  it('torn tail: keeps every acknowledged commit and nothing of a torn multi-key transaction', async () => {
    const daemon = createDaemon();
    try {
      await daemon.start();
      const client = await connect(daemon);
      for (let i = 0; i < 5; i++) await client.put(`t/${i}`, `v${i}`);
      const txn = await client.beginTransaction();
      for (const key of ['t/a', 't/b', 't/c']) await txn.put(key, 'old');
      await txn.commit();
      await client.close();
      await daemon.kill();
      // The crash tore a second, unacknowledged transaction writing 'new' to the same keys:
      // its Start marker and two of its three items reached the file.
      const journalPath = engineFiles(join(daemon.dataDir, 'db')).journals.at(-1)!;
      const head = readJournalHead(journalPath);
      const journal = parseJournal(head);
      const last = journal.batches.at(-1)!;
      expect(last.items).toHaveLength(3);
      const keep = last.items[2].offset - last.offset;
      writeAt(journalPath, journal.validEnd, tornBatch(head, last, last.seqno + 1n, keep, (v) => Buffer.from(v.toString('latin1').replace('old', 'new'), 'latin1')));
      const outcome = await startWithin(daemon);
      expect(outcome.started, outcome.stderr).toBe(true);
      expect(await readKeys(daemon, ['t/0', 't/4', 't/a', 't/b', 't/c'])).toEqual(['v0', 'v4', 'old', 'old', 'old']);
    } finally {
      await daemon.dispose();
    }
  });

  // Sync mode acknowledged all eight commits after their fsync: a journal that comes back with
  // five must not be served (README, Recovery: the watermark refuses it with CORRUPTION, exit 2).
  it('a journal cut inside acknowledged commits refuses to start with CORRUPTION', async () => {
    const values = Array.from({ length: 8 }, (_, i) => `value-${i}`);
    const { daemon, journalPath, journal } = await killedWith(asWrites(values));
    try {
      truncateFile(journalPath, journal.batches[5].offset + 20); // inside commit 6
      const outcome = await startWithin(daemon);
      expect(outcome.started, 'a journal missing acknowledged commits must not open').toBe(false);
      expectCodedRefusal(outcome, 'truncated journal');
      expect(outcome.code).toBe('CORRUPTION');
      expect(outcome.exitCode, 'exit 2: the service manager does not restart it').toBe(2);
    } finally {
      await daemon.dispose();
    }
  });

  it('a damaged journal value refuses to start with CORRUPTION and leaves the journal as it was', async () => {
    const { daemon, journalPath, journal } = await killedWith(asWrites(Array.from({ length: 8 }, (_, i) => `value-${i}`)));
    try {
      const item = journal.batches[2].items[0];
      flipBit(journalPath, item.end - 2, 3);
      const outcome = await startWithin(daemon);
      expect(outcome.started).toBe(false);
      expectCodedRefusal(outcome, 'damaged journal value');
      expect(outcome.code).toBe('CORRUPTION');
      // Regression (review): it said only "corruption: journal recovery failed:
      // RecoveryError(ChecksumMismatch)"; removing the watermark, the README's other remedy,
      // does not open it.
      expect(outcome.stderr).toMatch(/CORRUPTION: journal recovery failed \(.*ChecksumMismatch.*\): a journal is damaged .* Restore from a dump \(toondb load\) or a backup/);
      expect(outcome.exitCode, 'exit 2: the service manager does not restart it').toBe(2);
      expect(fileSize(journalPath), 'the evidence is kept').toBe(64 * 1024 * 1024);
    } finally {
      await daemon.dispose();
    }
  });

  it('a damaged table data block reads as CORRUPTION, never as a wrong value', async () => {
    const values = Array.from({ length: 12 }, (_, i) => `table-${i}-${'y'.repeat(50)}`);
    const { daemon, dbDir } = await killedWith(asWrites(values), { checkpointAfter: 8 });
    try {
      // The data keyspace's table holds c/0..c/7; its first data block starts at offset 0 with a
      // 33-byte header; flip a bit well inside the block's payload.
      const table = engineFiles(dbDir).tables.filter((t) => /keyspaces\/1\//.test(t)).at(-1)!;
      flipBit(table, 60, 2);
      const outcome = await startWithin(daemon);
      expect(outcome.started, outcome.stderr).toBe(true);
      const client = await connect(daemon);
      const codes: string[] = [];
      for (const [i, value] of values.entries()) {
        try {
          expect((await client.get(`c/${i}`))?.toString(), `c/${i}`).toBe(value);
        } catch (error) {
          const code = (error as { code?: string }).code;
          if (code === undefined) throw error;
          codes.push(code);
        }
      }
      await client.close();
      expect(codes.length, 'the damaged block is reported').toBeGreaterThan(0);
      expect(new Set(codes)).toEqual(new Set(['CORRUPTION']));
    } finally {
      await daemon.dispose();
    }
  });

  it('a damaged version file refuses to start with CORRUPTION', async () => {
    const { daemon, dbDir } = await killedWith(asWrites(['a', 'b', 'c', 'd']), { checkpointAfter: 2 });
    try {
      const version = engineFiles(dbDir).versions.find((v) => /keyspaces\/1\//.test(v))!;
      flipBit(version, Math.floor(fileSize(version) / 2), 0);
      const outcome = await startWithin(daemon);
      expectCodedRefusal(outcome, 'damaged version file');
      expect(outcome.code).toBe('CORRUPTION');
    } finally {
      await daemon.dispose();
    }
  });

  // Regression, bug "a flipped journal batch seqno serves a superseded value": fjall 3.1 does
  // not checksum a batch's Start marker, so a flipped seqno bit replayed an old write above
  // newer ones and recovery served the superseded value (or revived a deleted key). The engine's
  // preflight (engine/src/core/preflight.rs) now requires batch seqnos to increase along the
  // journal and refuses with CORRUPTION.
  it('regression: a flipped journal batch seqno is refused with CORRUPTION, not served as a superseded value', async () => {
    const { daemon, journalPath, journal } = await killedWith([['c/0', 'old'], ['c/1', 'x'], ['c/0', 'new']]);
    try {
      // Push the first commit's seqno up by 2^32 (bit 0 of the seqno's fifth byte).
      flipBit(journalPath, journal.batches[0].offset + 5 + 4, 0);
      const outcome = await startWithin(daemon);
      expect(outcome.started, 'a journal whose batch seqnos go backwards must not open').toBe(false);
      expectCodedRefusal(outcome, 'flipped batch seqno');
      expect(outcome.code).toBe('CORRUPTION');
    } finally {
      await daemon.dispose();
    }
  });

  // fjall 3.1 + lsm-tree: a batch seqno with its top bit flipped recovers "fine" with the
  // database seqno at 2^63 + n; the first write then panics in lsm-tree ("Ran out of sequence
  // numbers", the top bit is reserved) inside a napi task that cannot unwind, and the daemon
  // aborts (SIGABRT), again after every restart. Since fa889cc the engine refuses to open when
  // recovery lands implausibly far (> 2^40) past the durable watermark.
  it('a journal batch seqno flipped far ahead is refused with CORRUPTION at start, or else never aborts the first write', async () => {
    const { daemon, journalPath, journal } = await killedWith(asWrites(['a', 'b', 'c']));
    try {
      flipBit(journalPath, journal.batches[0].offset + 5 + 7, 7);
      const outcome = await startWithin(daemon);
      if (!outcome.started) {
        expectCodedRefusal(outcome, 'seqno with the top bit set');
        expect(outcome.code).toBe('CORRUPTION');
        return;
      }
      const client = await connect(daemon);
      try {
        const result = await client.put('after', 'x').then(() => 'ok', codeOfError);
        expect(['ok', ...START_CODES], `first write after recovery (recovered seqno ${outcome.recoveredSeqno}); daemon stderr: ${daemon.stderr.trim().split('\n').slice(0, 3).join(' | ')}`).toContain(result);
      } finally {
        await client.close().catch(() => undefined);
      }
    } finally {
      await daemon.dispose();
    }
  });

  // Regression, bug "a flipped table global seqno silently rolls back acknowledged commits":
  // lsm-tree 3.1 checksums only a version file's table of contents and never checks the xxh3
  // of the whole file kept in `current`. A flipped bit in a table's global seqno made the table
  // look newer than the journal, replay skipped every later commit, and recovery served the
  // values of the last checkpoint, silently. The engine's preflight now checks that xxh3 and
  // refuses with CORRUPTION.
  it('regression: a flipped table global seqno in a version file is refused with CORRUPTION, not rolled back silently', async () => {
    const { daemon, dbDir } = await killedWith([['c/0', 'old'], ['c/1', 'old'], ['c/0', 'new'], ['c/1', 'new']], { checkpointAfter: 2 });
    try {
      const versionPath = engineFiles(dbDir).versions.find((v) => /keyspaces\/1\//.test(v))!;
      const table = parseVersion(readFileSync(versionPath)).tables[0];
      flipBit(versionPath, table.globalSeqnoOffset + 4, 2); // + 2^34
      const outcome = await startWithin(daemon);
      expect(outcome.started, 'a damaged version file must not open').toBe(false);
      expectCodedRefusal(outcome, 'damaged table global seqno');
      expect(outcome.code).toBe('CORRUPTION');
    } finally {
      await daemon.dispose();
    }
  });

  // Regression, bug "a damaged filter hash type aborts the daemon": lsm-tree 3.1 checks a
  // version file's filter_hash_type with assert_eq!; the panic happened while fjall held its
  // keyspaces lock, and fjall's Drop then panicked again on the poisoned lock, so the process
  // aborted (SIGABRT, no coded log line) before any catch_unwind could help. The engine's
  // preflight now verifies the version file's xxh3 before fjall reads it.
  it('regression: a damaged filter hash type in a version file is refused with CORRUPTION instead of aborting the daemon', async () => {
    const { daemon, dbDir } = await killedWith(asWrites(['a', 'b', 'c']), { checkpointAfter: 2 });
    try {
      const versionPath = engineFiles(dbDir).versions.find((v) => /keyspaces\/1\//.test(v))!;
      const [at] = parseVersion(readFileSync(versionPath)).sections.get('filter_hash_type')!;
      flipBit(versionPath, at, 7);
      const outcome = await startWithin(daemon);
      expect(outcome.started, 'a damaged version file must not open').toBe(false);
      expectCodedRefusal(outcome, 'damaged filter_hash_type');
      expect(outcome.code).toBe('CORRUPTION');
    } finally {
      await daemon.dispose();
    }
  });

  // fjall 3.1 journal recovery: any undecodable entry (bad tag, bad trailer magic, bad length)
  // is taken for the end of the journal: recovery truncates the file there (set_len + fsync) and
  // starts, silently dropping every later, acknowledged and fsynced commit. Only damage inside
  // item bytes is caught (by the batch checksum). Since fa889cc the engine compares the
  // recovered seqno with the durable watermark and refuses to start with CORRUPTION.
  it('a damaged marker in the middle of the journal refuses to start instead of dropping every later commit', async () => {
    const values = Array.from({ length: 10 }, (_, i) => `value-${i}`);
    const { daemon, journalPath, journal } = await killedWith(asWrites(values));
    try {
      flipBit(journalPath, journal.batches[3].endOffset + 10, 0); // trailer magic of commit 4
      const outcome = await startWithin(daemon);
      if (!outcome.started) {
        expectCodedRefusal(outcome, 'damaged journal marker');
        expect(outcome.code).toBe('CORRUPTION');
        return;
      }
      const served = await readKeys(daemon, values.map((_, i) => `c/${i}`));
      const lost = served.map((v, i) => (v === values[i] ? null : `c/${i}`)).filter(Boolean);
      expect(lost, `acknowledged commits missing after recovery (journal now ${fileSize(journalPath)} bytes, was ${journal.validEnd} used)`).toEqual([]);
    } finally {
      await daemon.dispose();
    }
  });
});
