// Test runner configuration. The native addon is loaded by several suites, so every test file
// runs in its own forked process (the `forks` pool): a crash in the addon fails one file, and
// per-process state (libuv pool, open databases) never leaks between files.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
