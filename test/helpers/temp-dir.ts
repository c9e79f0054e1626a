/**
 * Test helper: private temp dirs under os.tmpdir(), each test's own, with short names so a
 * socket path inside stays far below the 103-byte limit. Every dir made here is removed after
 * the test file's tests (test/setup.ts registers removeTempDirs), so a run leaves nothing
 * behind even where a test only wrote a dump or a unit file into one.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The dirs made in this test file's process (vitest's forks pool: one process per file). */
const tempDirs = new Set<string>();

export function makeTempDir(prefix = 'tdb-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
