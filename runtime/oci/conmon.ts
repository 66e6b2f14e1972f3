// conmon, the container monitor CRI-O uses: it runs `runtime create`, holds the
// container's stdio, writes the CRI log file, records the exit code and serves
// the attach socket and control fifo. It double-forks away from berthd, so a
// container keeps its monitor when berthd dies; berthd finds it again through
// the pid file and the files conmon leaves in the bundle. This file is the one
// place that knows conmon's protocol: its arguments, files and control lines.
import { closeSync, constants, existsSync, openSync, promises as fsp, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describeError, internal } from '../errors';
import { launchConmon } from './conmon-launch';
import { aliveInStat, killQuietly, processAlive, processArgv, tryReadPidFile } from './host-process';
import type { OciRuntime } from './oci-runtime';

export interface ConmonCreateOptions {
  id: string;
  bundleDir: string;
  /** Absolute CRI log file path (k8s-file format). */
  logPath: string;
  /** Directory where conmon writes "<id>" with the exit code when the container exits. */
  exitDir: string;
  /** Directory holding "<id>" (conmon's link to the bundle, through which it binds the attach socket). */
  socketDir: string;
  runtime: OciRuntime;
  terminal: boolean;
  stdin: boolean;
  stdinOnce: boolean;
  /** How long to wait for the runtime to create the container. */
  timeoutMs?: number;
  /**
   * Restore from a checkpoint instead of creating: conmon runs `runtime
   * restore --detach --image-path <imagesDir> --work-path <bundle>` (criu's
   * restore.log lands in the bundle) and reports the restored init's pid.
   */
  restore?: { imagesDir: string; runtimeArgs: string[] };
}

/** A conmon started and waiting on its start pipe. */
export interface PendingConmon {
  /** Lets it run `runtime create`; resolves once the container exists. */
  run(): Promise<ConmonCreated>;
  /** Kills it unused (settles once it is killed); nothing of it is left but the log file it opened. */
  abandon(): Promise<void>;
}

export interface ConmonCreated {
  /** The container's init process. */
  pid: number;
  conmonPid: number;
}

/** Files conmon keeps in the bundle (it is also the --persist-dir), and the ones it makes beside it. */
export const conmonFiles = {
  containerPid: (bundle: string) => join(bundle, 'pidfile'),
  conmonPid: (bundle: string) => join(bundle, 'conmon.pid'),
  /** Exit code as decimal text, written when the container exits. */
  exit: (bundle: string) => join(bundle, 'exit'),
  /** Exists once the container's memory cgroup saw an OOM kill. */
  oom: (bundle: string) => join(bundle, 'oom'),
  /** Control fifo: "<type> <height> <width>\n"; type 1 = resize, 2 = reopen log. */
  ctl: (bundle: string) => join(bundle, 'ctl'),
  /**
   * The attach socket (SOCK_SEQPACKET). conmon binds it through its link
   * "<socketDir>/<id>" to the bundle, so the socket itself lives here.
   */
  attachSocket: (bundle: string) => join(bundle, 'attach'),
  /** The link to the bundle conmon makes under --socket-dir-path. */
  attachLink: (socketDir: string, id: string) => join(socketDir, id),
  /** The exit file conmon writes under --exit-dir (renamed into place from "<id>.XXXXXX"). */
  exitRecord: (exitDir: string, id: string) => join(exitDir, id),
};

const CTL_RESIZE = 1;
const CTL_REOPEN_LOG = 2;

export class Conmon {
  constructor(readonly path: string) {}

  /**
   * Starts conmon now; it waits on its start pipe until run(). Its start-up
   * (exec, dynamic linking) overlaps whatever the caller still prepares
   * (rootfs mount, config.json). The bundle and log directories must exist.
   * abandon() kills it before it has done anything but open the log file.
   */
  prepare(options: ConmonCreateOptions): PendingConmon {
    const { bundleDir: bundle, runtime } = options;
    const launched = launchConmon(this.path, conmonArgs(options), bundle);
    const earlyOutput: Buffer[] = [];
    const report = launched.then((monitor) => {
      monitor.failed.catch(() => undefined);
      for (const out of monitor.output) out.on('data', (b: Buffer) => earlyOutput.push(b));
      return readSyncReport(monitor.syncPipe, earlyOutput);
    });
    // Settled by run() through the race below; a conmon abandoned before then must not leave an unhandled rejection.
    report.catch(() => undefined);

    let settled = false;
    const timeoutMs = options.timeoutMs ?? 120_000;
    const run = async (): Promise<ConmonCreated> => {
      if (settled) throw internal(`conmon for container ${options.id} was already run or abandoned`);
      settled = true;
      const monitor = await launched;
      monitor.release();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(internal(`conmon did not report container ${options.id} within ${timeoutMs / 1000} s`)), timeoutMs);
      });
      try {
        const message = await Promise.race([report, monitor.failed, timeout]);
        if (message.data <= 0) {
          throw internal(`${runtime.handler} ${options.restore ? 'restore' : 'create'} failed: ${(message.message ?? 'no message').trim()}`);
        }
        const conmonPid = tryReadPidFile(conmonFiles.conmonPid(bundle));
        if (conmonPid === undefined) throw internal(`conmon did not write its pid file ${conmonFiles.conmonPid(bundle)}`);
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
      run: () => runtime.timed(options.restore ? 'restore' : 'create', run),
      abandon: async () => {
        if (settled) return;
        settled = true;
        // Killed while it waits on the start pipe: closing the pipe alone would let it go on and create.
        // Settled once it is killed: its spawn may still be under way when this is called.
        await launched.then(
          (monitor) => {
            monitor.kill();
            monitor.dispose();
          },
          () => undefined,
        );
      },
    };
  }
}

function conmonArgs(options: ConmonCreateOptions): string[] {
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
  for (const arg of [...runtime.globalArgs(), ...(options.restore?.runtimeArgs ?? [])]) args.push('--runtime-arg', arg);
  if (options.restore) args.push('--restore', options.restore.imagesDir);
  if (runtime.systemdCgroup) args.push('--systemd-cgroup');
  if (options.terminal) args.push('--terminal');
  if (options.stdin) {
    args.push('--stdin');
    if (!options.stdinOnce) args.push('--leave-stdin-open');
  }
  return args;
}

/** conmon's one JSON line on the sync pipe: the container's pid, or a non-positive data and the runtime's error. */
function readSyncReport(syncPipe: Readable, earlyOutput: Buffer[]): Promise<{ data: number; message?: string }> {
  return new Promise((resolve, reject) => {
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
}

/** Asks the container's conmon to reopen the log file (after the kubelet rotated it). */
export function reopenConmonLog(bundle: string): void {
  writeControl(bundle, `${CTL_REOPEN_LOG} 0 0\n`);
}

/** Resizes the container's terminal through its conmon. */
export function resizeConmonTerminal(bundle: string, size: { height: number; width: number }): void {
  writeControl(bundle, `${CTL_RESIZE} ${size.height} ${size.width}\n`);
}

/** Throws when no conmon serves the fifo (the monitor is gone). */
function writeControl(bundle: string, line: string): void {
  let fd: number;
  try {
    // Non-blocking: with no conmon reading, open fails (ENXIO) instead of hanging berthd.
    fd = openSync(conmonFiles.ctl(bundle), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw internal(`conmon control fifo ${conmonFiles.ctl(bundle)} is not served: ${describeError(err)}`);
  }
  try {
    writeSync(fd, line);
  } catch (err) {
    throw internal(`conmon control fifo ${conmonFiles.ctl(bundle)}: ${describeError(err)}`);
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
  return exitOf(text, mtimeMs, existsSync(conmonFiles.oom(bundle)));
}

function exitOf(text: string, finishedAtMs: number, oomKilled: boolean): ConmonExit {
  const code = Number.parseInt(text, 10);
  return { exitCode: Number.isFinite(code) ? code : -1, finishedAtMs, oomKilled };
}

/** readExit without blocking the event loop. */
export async function readExitAsync(bundle: string): Promise<ConmonExit | undefined> {
  const path = conmonFiles.exit(bundle);
  try {
    const [text, st] = await Promise.all([fsp.readFile(path, 'utf8'), fsp.stat(path)]);
    const oomKilled = await fsp.access(conmonFiles.oom(bundle)).then(() => true, () => false);
    return exitOf(text.trim(), st.mtimeMs, oomKilled);
  } catch {
    return undefined;
  }
}

/** True when pid is a live conmon monitoring container id (pids are reused). */
export function isConmonOf(pid: number, id: string): boolean {
  const argv = processArgv(pid);
  return argv !== undefined && isConmonArgvOf(argv, id) && processAlive(pid);
}

/** isConmonOf from /proc/<pid>/cmdline and /proc/<pid>/stat already read (null: gone), as recovery reads them in one batch. */
export function isConmonOfProc(cmdline: string | null, stat: string | null, id: string): boolean {
  return cmdline !== null && stat !== null && isConmonArgvOf(cmdline.split('\0'), id) && aliveInStat(stat);
}

function isConmonArgvOf(argv: string[], id: string): boolean {
  return argv[0].endsWith('conmon') && argv.includes(id);
}

/** The container a live conmon monitors and its bundle, read from its arguments; undefined for any other process. */
export function conmonTarget(pid: number): { id: string; bundle: string } | undefined {
  return conmonTargetOf(processArgv(pid));
}

/** conmonTarget from an argv already read. */
export function conmonTargetOf(argv: string[] | undefined): { id: string; bundle: string } | undefined {
  if (!argv?.[0]?.endsWith('conmon')) return undefined;
  const valueOf = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at > 0 ? argv[at + 1] : undefined;
  };
  const bundle = valueOf('-b');
  const id = valueOf('-c');
  return bundle && id ? { id, bundle } : undefined;
}
