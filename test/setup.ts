/**
 * Runs in every test file's process before its tests (vitest `setupFiles`): after the file's
 * tests, the temp dirs its tests made with makeTempDir are removed, including those a test
 * only wrote a dump or a unit file into, so a run leaves nothing under os.tmpdir().
 */

import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/temp-dir.js';

afterAll(removeTempDirs);
