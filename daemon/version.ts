/**
 * The package version, read once from the package.json this file ships in.
 *
 * Works from the TypeScript sources (daemon/version.ts) and from the compiled output
 * (dist/daemon/version.js) alike, by walking up to the nearest package.json named `toondb`.
 */

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 4; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'toondb' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; keep walking up
    }
    dir = dirname(dir);
  }
  throw new Error('invariant: toondb package.json not found above ' + fileURLToPath(import.meta.url));
}

export const VERSION = findVersion();
