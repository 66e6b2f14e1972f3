// How a conmon process is started: fd 3 is the sync pipe (conmon reports the
// container's pid or the runtime's error), fd 4 the start pipe (conmon waits
// on it before running `runtime create`), in a session of its own. Through the
// addon's posix_spawn when it can, so berthd's heap is not forked; else
// through child_process.
import type { BerthNative } from '../../native';
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { isAbsolute } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { describeError, internal } from '../errors';
import { killQuietly, nativeSpawner } from './host-process';

export interface LaunchedMonitor {
  syncPipe: Readable;
  /** conmon's stdout and stderr, for the error when it dies before reporting. */
  output: Readable[];
  /** Rejects when conmon could not be started at all. */
  failed: Promise<never>;
  /** Lets conmon go on and run `runtime create`. */
  release(): void;
  /** Kills the process started (before release: conmon itself, not yet daemonized). */
  kill(): void;
  dispose(): void;
}


/**
 * Starts conmon at `path` with `args` in `bundle`; it waits on its start pipe until release().
 * Rejects when conmon cannot be started (the addon's spawn runs on a pool thread).
 */
export async function launchConmon(path: string, args: string[], bundle: string): Promise<LaunchedMonitor> {
  // conmon's option parser converts its arguments from the locale's charset: under the C locale a
  // log path with any byte above 0x7f fails ("Invalid byte sequence in conversion input").
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C.UTF-8', _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4' };
  const native = isAbsolute(path) ? nativeSpawner() : undefined;
  if (native) return launchNative(native, path, args, bundle, env);
  const child = spawn(path, args, { cwd: bundle, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], env });
  const startPipe = child.stdio[4] as Writable;
  startPipe.on('error', () => undefined);
  return {
    syncPipe: child.stdio[3] as Readable,
    output: [child.stdout, child.stderr].filter((s): s is Readable => s !== null),
    failed: new Promise<never>((_, reject) => child.once('error', (err) => reject(internal(`cannot run conmon (${path}): ${err.message}`, err)))),
    release: () => startPipe.end(Buffer.from([0])),
    kill: () => void child.kill('SIGKILL'),
    dispose: () => {
      for (const stream of child.stdio) stream?.destroy();
      child.unref();
    },
  };
}

async function launchNative(native: BerthNative, path: string, args: string[], bundle: string, env: Record<string, string>): Promise<LaunchedMonitor> {
  let spawned: { pid: number; fds: number[] };
  try {
    spawned = await native.spawnDetached(path, [path, ...args], Object.entries(env).map(([k, v]) => `${k}=${v}`), bundle, ['null', 'write', 'write', 'write', 'read']);
  } catch (err) {
    throw internal(`cannot run conmon (${path}): ${describeError(err)}`, err);
  }
  const [, outFd, errFd, syncFd, startFd] = spawned.fds;
  const reader = (fd: number): Readable => new Socket({ fd, readable: true, writable: false });
  const syncPipe = reader(syncFd);
  const output = [reader(outFd), reader(errFd)];
  // conmon's first process exits once released and daemonized (or killed); reaped then, or it stays a
  // zombie of berthd. Not before: waitChild holds a libuv worker thread until it returns.
  let reaping = false;
  const reap = (): void => {
    if (!reaping) void native.waitChild(spawned.pid).catch(() => undefined);
    reaping = true;
  };
  let startOpen = true;
  const closeStart = (): void => {
    if (startOpen) closeSync(startFd);
    startOpen = false;
  };
  return {
    syncPipe,
    output,
    failed: new Promise<never>(() => undefined),
    kill: () => {
      killQuietly(spawned.pid, 'SIGKILL');
      reap();
    },
    release: () => {
      try {
        writeSync(startFd, Buffer.from([0]));
      } catch {
        // conmon is gone; the sync pipe's close says so
      }
      closeStart();
      reap();
    },
    dispose: () => {
      // Neither released nor killed: closing the start pipe alone would let it go on and create.
      if (!reaping) killQuietly(spawned.pid, 'SIGKILL');
      closeStart();
      reap();
      syncPipe.destroy();
      for (const out of output) out.destroy();
    },
  };
}
