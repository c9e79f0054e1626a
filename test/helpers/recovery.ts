/**
 * Test helper for recovery tests: restart a daemon whose files were damaged and judge how it
 * refused, if it did.
 *
 * A start either listens, exits (a refusal, which must be coded, logged and one line on stderr:
 * no panic, no stack) or hangs (a failure: START_TIMEOUT_MS).
 */
import { expect } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import type { TestDaemon } from './daemon.js';

export const START_TIMEOUT_MS = 20_000;
/** Codes a refused start may carry. */
export const START_CODES = ['CORRUPTION', 'IO_ERROR', 'STORAGE_FAILED'];
/** Codes a read of damaged data may fail with. */
export const READ_CODES = ['CORRUPTION', 'IO_ERROR'];

export const codeOfError = (error: unknown) => (error as { code?: string }).code ?? String(error);

export interface StartOutcome {
  started: boolean;
  hung?: boolean;
  exitCode?: number | null;
  code?: string;
  stderr?: string;
  recoveredSeqno?: string;
}

/** Starts the daemon; a start that neither listens nor exits within the timeout is a hang. */
export async function startWithin(daemon: TestDaemon): Promise<StartOutcome> {
  const before = daemon.logs.length;
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), START_TIMEOUT_MS)));
  try {
    const result = await Promise.race([daemon.start().then(() => 'ok' as const), hung]);
    if (result === 'hung') {
      await daemon.kill();
      return { started: false, hung: true };
    }
    const recovered = daemon.logs.slice(before).find((l) => l.msg === 'storage recovered');
    return { started: true, recoveredSeqno: String(recovered?.seqno) };
  } catch {
    const exitCode = await daemon.waitForExit();
    const fatal = daemon.logs.slice(before).find((l) => l.msg === 'cannot start');
    return { started: false, exitCode, code: typeof fatal?.code === 'string' ? fatal.code : undefined, stderr: daemon.stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** A refusal must be coded, logged and short: exit 1, one stderr line, no panic or stack. */
export function expectCodedRefusal(outcome: StartOutcome, what: string): void {
  expect(outcome.hung, `${what}: start hung`).toBeFalsy();
  expect(outcome.exitCode, `${what}: exit code`).not.toBe(0);
  expect(START_CODES, `${what}: 'cannot start' log code (stderr: ${outcome.stderr})`).toContain(outcome.code);
  const stderr = (outcome.stderr ?? '').trim();
  expect(stderr, `${what}: stderr`).toMatch(new RegExp(`^toondbd: ${outcome.code}: [^\\n]+$`));
  expect(stderr, `${what}: stderr`).not.toMatch(/panicked|\n\s+at /);
}

export async function connect(daemon: TestDaemon): Promise<IpcClient> {
  return IpcClient.connect(daemon.socketPath, { timeoutMs: 10_000 });
}
