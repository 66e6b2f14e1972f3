// Runs a short host command (runc state/kill/delete, a CNI plugin, the pause
// binary) and collects its output, as execFile does, but started by the
// addon's posix_spawn on a pool thread: libuv's spawn forks berthd's heap on
// the event loop (tens of ms each on a busy node, and a pod's bring-up and
// bring-down run several). The child leads a session of its own. Falls back
// to child_process when the addon is not built.
import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import { loadNative, type BerthNative } from './index';

export interface CommandOptions {
  /** The whole environment (default: berthd's). */
  env?: Record<string, string | undefined>;
  /** Written to the command's stdin, which is then closed (default: stdin is /dev/null). */
  input?: string | Buffer;
  /** SIGKILL after this long (default: none). */
  timeoutMs?: number;
  /** Bytes kept of stdout and of stderr each; the rest is read and dropped (default 4 MiB). */
  maxOutputBytes?: number;
}

export interface CommandResult {
  /** Exit code; null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

/** The command could not be started at all (no such file, not executable). */
export class CommandStartError extends Error {
  constructor(
    readonly path: string,
    readonly errno: number | string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'CommandStartError';
  }
}

let spawner: BerthNative | null | undefined;

function nativeSpawn(): BerthNative | undefined {
  if (spawner === undefined) {
    try {
      const native = loadNative();
      spawner = typeof native.spawnDetached === 'function' ? native : null;
    } catch {
      spawner = null;
    }
  }
  return spawner ?? undefined;
}

const DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024;

/** Runs `path` (absolute, or found on PATH by the fallback only) with `args`; rejects only with a CommandStartError. */
export async function runCommand(path: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const native = path.startsWith('/') ? nativeSpawn() : undefined;
  if (!native) return runWithChildProcess(path, args, options);
  const env = Object.entries(options.env ?? process.env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  let spawned: { pid: number; fds: number[]; written: number[] };
  const input = options.input === undefined ? undefined : Buffer.from(options.input);
  try {
    // The input goes into the pipe before the command starts (as far as the pipe takes it): a CNI
    // plugin or `runc update` reading its stdin first does not wait for this loop to write it.
    spawned = await native.spawnDetached(path, [path, ...args], env, '', [input !== undefined ? 'read' : 'null', 'write', 'write'], [input]);
  } catch (err) {
    const e = err as { errno?: number; message?: string };
    throw new CommandStartError(path, e.errno, `cannot run ${path}: ${e.message ?? String(err)}`);
  }
  const [inFd, outFd, errFd] = spawned.fds;
  if (inFd >= 0 && input !== undefined) {
    const stdin = new Socket({ fd: inFd, readable: false, writable: true });
    stdin.on('error', () => undefined);
    stdin.end(input.subarray(spawned.written[0] ?? 0));
  }
  const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const stdout = collect(new Socket({ fd: outFd, readable: true, writable: false }), max);
  const stderr = collect(new Socket({ fd: errFd, readable: true, writable: false }), max);
  let timedOut = false;
  const timer =
    options.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          try {
            process.kill(spawned.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }, options.timeoutMs)
      : undefined;
  try {
    // Reaped once its output closed, so the wait holds a pool thread only for the moment between exit and reaping.
    const [out, err] = await Promise.all([stdout, stderr]);
    const { code, signal } = await native.waitChild(spawned.pid);
    return { code, signal: signal !== null ? signalName(signal) : null, stdout: out, stderr: err, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

function signalName(n: number): NodeJS.Signals {
  const entry = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return (entry?.[0] ?? 'SIGKILL') as NodeJS.Signals;
}

/** Everything `stream` yields up to `max` bytes, once it closed (a read error ends it like its end). */
function collect(stream: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (b: Buffer) => {
      if (size >= max) return;
      const take = b.subarray(0, max - size);
      chunks.push(take);
      size += take.length;
    });
    stream.on('error', () => undefined);
    stream.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

function runWithChildProcess(path: string, args: readonly string[], options: CommandOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { env: options.env ?? process.env, stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
    const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const stdout = collect(child.stdout!, max);
    const stderr = collect(child.stderr!, max);
    let timedOut = false;
    const timer = options.timeoutMs !== undefined ? setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), options.timeoutMs) : undefined;
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input ?? '');
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new CommandStartError(path, err.code, `cannot run ${path}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      void Promise.all([stdout, stderr]).then(([out, err]) => resolve({ code, signal, stdout: out, stderr: err, timedOut }));
    });
  });
}
