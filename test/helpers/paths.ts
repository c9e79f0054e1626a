/**
 * Where the compiled artefacts live. Black-box tests run the compiled JavaScript (dist/), as a
 * service manager would; `npm test` builds it first.
 */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOONDBD_BIN = join(REPO_ROOT, 'dist', 'bin', 'toondbd.js');
export const TOONDB_BIN = join(REPO_ROOT, 'dist', 'bin', 'toondb.js');
/** The compiled client, for child processes that must not depend on a TS loader. */
export const CLIENT_MODULE = join(REPO_ROOT, 'dist', 'ipc-client', 'index.js');

if (!existsSync(TOONDBD_BIN)) {
  throw new Error(`${TOONDBD_BIN} is missing: run \`npm run build\` (npm test does it for you)`);
}
