// conmon, the container monitor CRI-O uses: it runs `runtime create`, holds the
// container's stdio, writes the CRI log file, records the exit code and serves
// the attach socket and control fifo. It double-forks away from berthd, so a
// container keeps its monitor when berthd dies; berthd finds it again through
// the pid file and the files conmon leaves in the bundle.
import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { isAbsolute, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { loadNative, type BerthNative } from '../../native';
import { internal } from '../errors';
import type { OciRuntime } from './oci-runtime';

export interface ConmonCreateOptions {
  id: string;
  bundleDir: string;
  /** Absolute CRI log file path (k8s-file format). */
  logPath: string;
  /** Directory where conmon writes "<id>" with the exit code when the container exits. */
  exitDir: string;
  /** Directory holding "<id>/attach" (a symlink conmon makes to the bundle). */
  socketDir: string;
  runtime: OciRuntime;
  terminal: boolean;
  stdin: boolean;
  stdinOnce: boolean;
  /** How long to wait for the runtime to create the container. */
  timeoutMs?: number;
}

interface LaunchedMonitor {
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

let nativeLoaded: BerthNative | null | undefined;

function nativeSpawner(): BerthNative | undefined {
  if (nativeLoaded === undefined) {
    try {
      const native = loadNative();
      nativeLoaded = typeof native.spawnDetached === 'function' ? native : null;
    } catch {
      nativeLoaded = null;
    }
  }
  return nativeLoaded ?? undefined;
}

/** A conmon started and waiting on its start pipe. */
export interface PendingConmon {
  /** Lets it run `runtime create`; resolves once the container exists. */
  run(): Promise<ConmonCreated>;
  /** Kills it unused; nothing of it is left but the log file it opened. */
  abandon(): void;
}

export interface ConmonCreated {
  /** The container's init process. */
  pid: number;
  conmonPid: number;
}

/** Files conmon keeps in the bundle (it is also the --persist-dir). */
export const conmonFiles = {
  containerPid: (bundle: string) => join(bundle, 'pidfile'),
  conmonPid: (bundle: string) => join(bundle, 'conmon.pid'),
  /** Exit code as decimal text, written when the container exits. */
  exit: (bundle: string) => join(bundle, 'exit'),
  /** Exists once the container's memory cgroup saw an OOM kill. */
  oom: (bundle: string) => join(bundle, 'oom'),
  /** Control fifo: "<type> <height> <width>\n"; type 1 = resize, 2 = reopen log. */
  ctl: (bundle: string) => join(bundle, 'ctl'),
  attachSocket: (socketDir: string, id: string) => join(socketDir, id, 'attach'),
};

const CTL_RESIZE = 1;
const CTL_REOPEN_LOG = 2;

export class Conmon {
  constructor(readonly path: string) {}

  /** Runs `runtime create` under a new conmon; resolves once the container exists (created, not started). */
  async create(options: ConmonCreateOptions): Promise<ConmonCreated> {
    return this.prepare(options).run();
  }

  /**
   * Starts conmon now; it waits on its start pipe until run(). Its start-up
   * (exec, dynamic linking) overlaps whatever the caller still prepares
   * (rootfs mount, config.json). The bundle and log directories must exist.
   * abandon() kills it before it has done anything but open the log file.
   */
  prepare(options: ConmonCreateOptions): PendingConmon {
    const { bundleDir: bundle, runtime } = options;
    const args = [
      '--api-version', '1',
      '-c', options.id,
      '-u', options.id,
      '-n', options.id,
      '-r', runtime.path,
      '-b', bundle,
      '-p', conmonFiles.containerPid(bundle),
      '-P', conmonFiles.conmonPid(bundle),
      '-l', `k8s-file:${options.logPath}`,
      '--exit-dir', options.exitDir,
      '--persist-dir', bundle,
      '--socket-dir-path', options.socketDir,
      '--log-level', 'info',
    ];
    for (const arg of runtime.globalArgs()) args.push('--runtime-arg', arg);
    if (runtime.systemdCgroup) args.push('--systemd-cgroup');
    if (options.terminal) args.push('--terminal');
    if (options.stdin) {
      args.push('--stdin');
      if (!options.stdinOnce) args.push('--leave-stdin-open');
    }

    const monitor = this.launch(args, bundle);
    const { syncPipe } = monitor;
    const earlyOutput: Buffer[] = [];
    for (const out of monitor.output) out.on('data', (b: Buffer) => earlyOutput.push(b));
    const spawnFailed = monitor.failed;

    const report = new Promise<{ data: number; message?: string }>((resolve, reject) => {
      let text = '';
      syncPipe.setEncoding('utf8');
      syncPipe.on('data', (chunk: string) => {
        text += chunk;
        const newline = text.indexOf('\n');
        if (newline >= 0) {
          try {
            resolve(JSON.parse(text.slice(0, newline)) as { data: number; message?: string });
          } catch {
            reject(internal(`conmon sent an unreadable sync message: ${text.slice(0, 200)}`));
          }
        }
      });
      syncPipe.on('error', () => undefined);
      syncPipe.on('close', () =>
        reject(internal(`conmon exited before reporting the container: ${Buffer.concat(earlyOutput).toString('utf8').trim().slice(0, 1000) || 'no output'}`)),
      );
    });
    // Settled by run() through the race below; a conmon abandoned before then must not leave an unhandled rejection.
    report.catch(() => undefined);
    spawnFailed.catch(() => undefined);

    let settled = false;
    const run = async (): Promise<ConmonCreated> => {
      if (settled) throw internal(`conmon for container ${options.id} was already run or abandoned`);
      settled = true;
      monitor.release();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(internal(`conmon did not report container ${options.id} within ${(options.timeoutMs ?? 120_000) / 1000} s`)), options.timeoutMs ?? 120_000);
      });
      try {
        const message = await Promise.race([report, spawnFailed, timeout]);
        if (message.data <= 0) {
          throw internal(`${runtime.handler} create failed: ${(message.message ?? 'no message').trim()}`);
        }
        const conmonPid = readPidFile(conmonFiles.conmonPid(bundle));
        return { pid: message.data, conmonPid };
      } catch (err) {
        // Whatever conmon got to: it must not linger without a container.
        const conmonPid = tryReadPidFile(conmonFiles.conmonPid(bundle));
        if (conmonPid && isConmonOf(conmonPid, options.id)) killQuietly(conmonPid, 'SIGKILL');
        throw err;
      } finally {
        clearTimeout(timer);
        monitor.dispose();
      }
    };
    return {
      run: () => runtime.timed('create', run),
      abandon: () => {
        if (settled) return;
        settled = true;
        // Killed while it waits on the start pipe: closing the pipe alone would let it go on and create.
        monitor.kill();
        monitor.dispose();
      },
    };
  }

  /**
   * Starts conmon with fd 3 as the sync pipe (conmon reports the pid or the
   * runtime's error) and fd 4 as the start pipe, in a session of its own.
   * Through the addon's posix_spawn when it can (berthd's heap is not
   * forked), else through child_process.
   */
  private launch(args: string[], bundle: string): LaunchedMonitor {
    const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4' };
    const native = isAbsolute(this.path) ? nativeSpawner() : undefined;
    if (native) {
      let spawned: { pid: number; fds: number[] };
      try {
        spawned = native.spawnDetached(this.path, [this.path, ...args], Object.entries(env).map(([k, v]) => `${k}=${v}`), bundle, ['null', 'write', 'write', 'write', 'read']);
      } catch (err) {
        throw internal(`cannot run conmon (${this.path}): ${(err as Error).message}`, err);
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
    const child = spawn(this.path, args, { cwd: bundle, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], env });
    const startPipe = child.stdio[4] as Writable;
    startPipe.on('error', () => undefined);
    return {
      syncPipe: child.stdio[3] as Readable,
      output: [child.stdout, child.stderr].filter((s): s is Readable => s !== null),
      failed: new Promise<never>((_, reject) => child.once('error', (err) => reject(internal(`cannot run conmon (${this.path}): ${err.message}`, err)))),
      release: () => startPipe.end(Buffer.from([0])),
      kill: () => void child.kill('SIGKILL'),
      dispose: () => {
        for (const stream of child.stdio) stream?.destroy();
        child.unref();
      },
    };
  }

  /** Asks conmon to reopen the log file (after the kubelet rotated it). */
  reopenLog(bundle: string): void {
    writeControl(bundle, `${CTL_REOPEN_LOG} 0 0\n`);
  }

  /** Resizes the container's terminal. */
  resize(bundle: string, height: number, width: number): void {
    writeControl(bundle, `${CTL_RESIZE} ${height} ${width}\n`);
  }
}

function writeControl(bundle: string, line: string): void {
  let fd: number;
  try {
    // Non-blocking: with no conmon reading, open fails (ENXIO) instead of hanging berthd.
    fd = openSync(conmonFiles.ctl(bundle), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw internal(`conmon control fifo ${conmonFiles.ctl(bundle)} is not served: ${(err as Error).message}`);
  }
  try {
    writeSync(fd, line);
  } finally {
    closeSync(fd);
  }
}

export interface ConmonExit {
  exitCode: number;
  /** When conmon wrote the exit file: the container's finish time. */
  finishedAtMs: number;
  oomKilled: boolean;
}

/** What conmon recorded about the container's exit; undefined while it runs. */
export function readExit(bundle: string): ConmonExit | undefined {
  const path = conmonFiles.exit(bundle);
  let text: string;
  let mtimeMs: number;
  try {
    text = readFileSync(path, 'utf8').trim();
    mtimeMs = statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
  const code = Number.parseInt(text, 10);
  return { exitCode: Number.isFinite(code) ? code : -1, finishedAtMs: mtimeMs, oomKilled: existsSync(conmonFiles.oom(bundle)) };
}

export function tryReadPidFile(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function readPidFile(path: string): number {
  const pid = tryReadPidFile(path);
  if (pid === undefined) throw internal(`conmon did not write its pid file ${path}`);
  return pid;
}

/** True when pid is a live conmon monitoring container id (pids are reused). */
export function isConmonOf(pid: number, id: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z') return false;
    return argv[0].endsWith('conmon') && argv.includes(id);
  } catch {
    return false;
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
