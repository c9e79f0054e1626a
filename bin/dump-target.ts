/**
 * Where `toondb dump FILE` writes, decided from what FILE is before a byte is written:
 *
 *   `-`                  stdout, streamed (the CLI refuses a terminal there: a dump is binary)
 *   not a regular file   an existing character or block device (/dev/null, a terminal) or FIFO is
 *                        opened and streamed into; nothing is created, renamed or removed. One
 *                        owned by another user than this one and root is refused (it would
 *                        read every value), unless it is this process's own stdout/stderr. A
 *                        socket cannot be opened (ENXIO) and is refused, pointing to `-`
 *   a symlink            followed: the file it names is written (or, if it names nothing yet,
 *                        created), never the link replaced; but not one another user made in a
 *                        sticky world-writable directory (/tmp), which could name any file
 *   this process's       (`/dev/stdout` or `/dev/fd/1` when stdout is a file, even one opened
 *   stdout or stderr     for `>>`) streamed into through that descriptor, as `-` is: never
 *                        replaced, which would drop what the file held and what `>>` appends
 *   a regular file,      written to a temporary file beside it (beside the symlink's target),
 *   or no file yet       fsynced, and renamed over it only once complete (the directory fsynced
 *                        after), so a failed or interrupted dump never destroys an earlier one
 *   a directory          refused
 *
 * Invariants: the temporary file is created exclusively (O_EXCL: never through a link planted
 * under its name); it is removed when the dump fails, and when SIGINT, SIGTERM or SIGHUP
 * interrupts it, after which the process dies of that signal as it would have without the
 * handler. A streamed target is opened without O_CREAT, so a device or FIFO that vanished
 * meanwhile is an error, not a new regular file.
 */

import { constants, fstatSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { lstat, open, readlink, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ToonDBError } from '../protocol/errors.js';

/** The FILE argument that means stdout (`dump`) or stdin (`load`). */
export const STDIO_NAME = '-';
/** Dangling symlinks followed in a row before giving up (Linux's MAXSYMLINKS). */
const SYMLINK_HOPS_MAX = 40;
/** Signals that interrupt a dump: each removes the temporary file first. */
const CLEANUP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** Why a directory cannot be fsynced here (not a failure of the dump): no read permission to
 * open it, or a file system that does not fsync directories. */
const DIRECTORY_SYNC_UNSUPPORTED: ReadonlySet<string> = new Set(['EACCES', 'EPERM', 'EINVAL', 'ENOTSUP', 'EISDIR']);
/** Mode of a dump file this CLI creates: it holds every value, so owner-only. */
const DUMP_FILE_MODE = 0o600;

export interface DumpTarget {
  /** What the messages call it: the FILE argument, or `stdout`. */
  readonly name: string;
  /** True when the bytes go straight to a stream (stdout, a device, a FIFO): a summary line
   * then belongs on stderr, where it cannot join the data. */
  readonly streamed: boolean;
  /** Where the `dumped N keys` line goes: never the stream the dump itself goes to. */
  readonly summary: NodeJS.WriteStream;
  write(bytes: Buffer): Promise<void>;
  /** Makes a complete dump durable and visible under its name. */
  finish(): Promise<void>;
  /** Undoes a dump that failed: removes the temporary file, if any. Never throws. */
  abandon(): Promise<void>;
}

function cannotWrite(file: string, why: string): ToonDBError {
  return new ToonDBError('INVALID_ARGUMENT', `cannot write ${file}: ${why}`);
}

/** A file-system error as the coded error the CLI prints; anything else unchanged. */
export function writeError(file: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === 'string' && !(error instanceof ToonDBError) ? cannotWrite(file, code) : error;
}

type Plan = { kind: 'replace'; path: string } | { kind: 'stream'; path: string };

/** What to do with `file` (see the header), following dangling symlinks `hops` deep so far. */
async function plan(file: string, hops = 0): Promise<Plan> {
  let link: Stats;
  try {
    link = await lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'replace', path: file };
    throw error;
  }
  if (!link.isSymbolicLink()) return byType(link, file, file);
  await refuseForeignLinkInSharedDir(file, link);
  let target: Stats;
  try {
    target = await stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    // Dangling: the dump creates the file the link names, as a shell's `>` would.
    if (hops >= SYMLINK_HOPS_MAX) throw cannotWrite(file, 'ELOOP');
    return plan(resolve(await realpath(dirname(file)), await readlink(file)), hops + 1);
  }
  // A regular file is replaced where it really is; anything else is opened through the link
  // (a /proc/self/fd link to a pipe has no path realpath could give).
  return byType(target, target.isFile() ? await realpath(file) : file, file);
}

/** A link another user made in a sticky, world-writable directory (/tmp) is not followed: it
 * would have the dump replace or create whatever file they name (as the kernel's
 * fs.protected_symlinks refuses, where it is on: not on macOS). */
async function refuseForeignLinkInSharedDir(file: string, link: Stats): Promise<void> {
  const ownUid = process.getuid?.();
  if (ownUid === undefined || link.uid === ownUid || link.uid === 0) return;
  const dir = await stat(dirname(resolve(file)));
  if ((dir.mode & 0o1002) === 0o1002 && dir.uid !== link.uid) {
    throw cannotWrite(file, `it is a symlink of uid ${link.uid} in the shared directory ${dirname(resolve(file))}, which could name any file`);
  }
}

function byType(stats: Stats, path: string, file: string): Plan {
  if (stats.isFile()) return { kind: 'replace', path };
  if (stats.isDirectory()) throw cannotWrite(file, 'it is a directory');
  // open(2) cannot write to a socket (ENXIO), e.g. /dev/stdout when stdout is a socketpair.
  if (stats.isSocket()) throw cannotWrite(file, `it is a socket (for stdout, dump to ${STDIO_NAME})`);
  return { kind: 'stream', path };
}

/** Opens the target for `file` (see the header). */
export async function openDumpTarget(file: string): Promise<DumpTarget> {
  if (file === STDIO_NAME) return streamTarget(process.stdout, 'stdout');
  let chosen: Plan;
  try {
    chosen = await plan(file);
  } catch (error) {
    throw writeError(file, error);
  }
  if (chosen.kind === 'replace') {
    const stdio = await standardStreamAt(chosen.path);
    if (stdio !== null) return streamTarget(stdio === 1 ? process.stdout : process.stderr, file);
  }
  if (chosen.kind === 'stream') {
    // A FIFO or device another user owns (one planted under a dump's name in /tmp, or a link to
    // their terminal) would hand them every value, as the temporary file and rename never do;
    // open() without O_CREAT also skips the kernel's fs.protected_fifos, which would stop a
    // shell's `>` there. Checked by name first (opening their FIFO would wait for their reader)
    // and again on what was opened. This process's own stdout or stderr (`sudo toondb dump
    // /dev/stdout | gzip`: a pipe of the user's shell) is its own, whoever made it.
    const ownStdio = (await standardStreamAt(chosen.path)) !== null;
    if (!ownStdio) refuseForeignStream(await stat(chosen.path).catch((error: unknown) => { throw writeError(file, error); }), file);
    const handle = await open(chosen.path, constants.O_WRONLY).catch((error: unknown) => { throw writeError(file, error); });
    try {
      if (!ownStdio) refuseForeignStream(await handle.stat(), file);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw writeError(file, error);
    }
    return {
      name: file,
      streamed: true,
      summary: process.stderr,
      write: (bytes) => handle.writeFile(bytes),
      finish: () => handle.close(),
      abandon: () => handle.close().catch(() => undefined),
    };
  }
  return replacingTarget(file, chosen.path);
}

/** Refuses a FIFO or device that neither this user nor root owns (see openDumpTarget). */
function refuseForeignStream(stats: Stats, file: string): void {
  const ownUid = process.getuid?.();
  if (ownUid === undefined || stats.uid === ownUid || stats.uid === 0) return;
  throw cannotWrite(file, `it is a ${stats.isFIFO() ? 'FIFO' : 'device'} owned by uid ${stats.uid}, who would read every value (dump to a new file, or to ${STDIO_NAME})`);
}

/** fsyncs `dir`, so the rename into it survives a power loss. Best effort once the dump is in
 * place: a directory this user may write but not read (mode 0300), or a file system that cannot
 * fsync a directory, leaves it as durable as the file system makes renames by itself, and the
 * dump is not reported failed for that. */
async function syncDirectory(dir: string): Promise<void> {
  let directory: FileHandle;
  try {
    directory = await open(dir, constants.O_RDONLY);
  } catch (error) {
    if (DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) return;
    throw error;
  }
  try {
    await directory.sync();
  } catch (error) {
    if (!DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await directory.close();
  }
}

/** 1 or 2 if the regular file at `path` is the one this process's stdout or stderr writes
 * (same device and inode), else null. */
async function standardStreamAt(path: string): Promise<1 | 2 | null> {
  const target = await stat(path).catch(() => null);
  if (target === null) return null;
  for (const fd of [1, 2] as const) {
    let stdio: Stats;
    try {
      stdio = fstatSync(fd);
    } catch {
      continue; // closed
    }
    if (stdio.dev === target.dev && stdio.ino === target.ino) return fd;
  }
  return null;
}

/** Stdout (or stderr) as a stream; for `-` the caller refuses a terminal (a dump is binary). */
function streamTarget(stream: NodeJS.WriteStream, name: string): DumpTarget {
  return {
    name,
    streamed: true,
    summary: stream === process.stderr ? process.stdout : process.stderr,
    write: (bytes) => new Promise<void>((done, fail) => stream.write(bytes, (error) => (error ? fail(error) : done()))),
    finish: async () => undefined,
    abandon: async () => undefined,
  };
}

async function replacingTarget(file: string, path: string): Promise<DumpTarget> {
  // A short name of its own beside the target (the target's name plus a suffix could pass the
  // 255-byte limit on a name that is itself legal).
  const temporary = join(dirname(path), `.toondb-dump-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  // In before the file exists: a signal right after its creation must still remove it.
  const onSignal = (signal: NodeJS.Signals) => {
    rmSync(temporary, { force: true });
    unwatch();
    process.kill(process.pid, signal); // no handler left: the default action, death by signal
  };
  const unwatch = () => {
    for (const signal of CLEANUP_SIGNALS) process.removeListener(signal, onSignal);
  };
  for (const signal of CLEANUP_SIGNALS) process.on(signal, onSignal);
  let handle: FileHandle;
  try {
    handle = await open(temporary, 'wx', DUMP_FILE_MODE);
  } catch (error) {
    unwatch();
    throw writeError(file, error);
  }
  return {
    name: file,
    streamed: false,
    summary: process.stdout,
    write: (bytes) => handle.writeFile(bytes),
    finish: async () => {
      await handle.sync();
      await handle.close();
      await rename(temporary, path);
      unwatch();
      await syncDirectory(dirname(path));
    },
    abandon: async () => {
      await handle.close().catch(() => undefined);
      await rm(temporary, { force: true });
      unwatch();
    },
  };
}
