/**
 * The client library's version, sent in `hello` as `toondb-node/<version>` (the daemon logs it).
 *
 * Read once from the nearest package.json named `toondb` above this file, so it works from the
 * TypeScript sources (ipc-client/) and from the compiled output (dist/ipc-client/) alike. A
 * client bundled without its package.json still connects; it reports version 0.0.0.
 */

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How many directories up to look for package.json (dist/ipc-client -> repo root is 2). */
const SEARCH_DEPTH_MAX = 4;

function findVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < SEARCH_DEPTH_MAX; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'toondb' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; keep walking up
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

export const CLIENT_VERSION = findVersion();
