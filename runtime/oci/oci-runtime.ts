// One OCI runtime handler (runc or crun) as berth drives it: everything but
// `create`, which conmon runs so that the container outlives berthd. Each call
// runs the binary with the handler's --root, so two berthds (tests) never see
// each other's containers.
import { closeSync, constants as fsConstants, lstatSync, openSync, unlinkSync } from 'node:fs';
import { open as openFile, readFile as readFileAsync, rm as rmAsync, rmdir as rmdirAsync } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { basename, join } from 'node:path';
import { runCommand, type CommandResult } from '../../native/run-command';
import { timeCall, type CallOutcome } from '../common/call-timing';
import { describeError, internal, notFound } from '../errors';

/** Receives the latency of each runtime call (berth_oci_runtime_call_duration_seconds). */
export type OciCallObserver = (operation: string, seconds: number, runtime: string, outcome: CallOutcome) => void;

export type OciStatus = 'creating' | 'created' | 'running' | 'stopped' | 'paused';

export interface OciState {
  id: string;
  status: OciStatus;
  pid: number;
  bundle: string;
}

/** The OCI runtime-spec `process` object as `runtime exec --process` reads it. */
export interface OciProcess {
  terminal?: boolean;
  user: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
  args: string[];
  env: string[];
  cwd: string;
  capabilities?: Record<'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient', string[]>;
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  selinuxLabel?: string;
  oomScoreAdj?: number;
  rlimits?: { type: string; hard: number; soft: number }[];
  consoleSize?: { height: number; width: number };
}

export interface OciRuntimeOptions {
  handler: string;
  path: string;
  root: string;
  /** Use the systemd cgroup driver (runc/crun --systemd-cgroup). */
  systemdCgroup: boolean;
  /** runc's fast paths may be used (its version is one they were tested with); default: when the binary is runc. */
  fastPaths?: boolean;
  observe?: OciCallObserver;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class OciRuntime {
  readonly handler: string;
  readonly path: string;
  readonly root: string;
  readonly systemdCgroup: boolean;
  /**
   * runc's on-disk state is known here (its exec fifo and state.json), which
   * lets start and delete of the common cases skip a Go binary's start-up
   * (~30 ms on these machines); only for runc series that were tested
   * (runtime/host/runtime-versions.ts), every other runtime is always run.
   */
  readonly fastPaths: boolean;
  private readonly observer: OciCallObserver | undefined;

  constructor(options: OciRuntimeOptions) {
    this.handler = options.handler;
    this.path = options.path;
    this.root = options.root;
    this.systemdCgroup = options.systemdCgroup;
    this.fastPaths = (options.fastPaths ?? true) && basename(options.path) === 'runc';
    this.observer = options.observe;
  }

  /** Runs `work` as one timed call of `operation` (also for calls made outside this class: conmon's create, exec). */
  timed<T>(operation: string, work: () => Promise<T>): Promise<T> {
    const observer = this.observer;
    if (!observer) return work();
    return timeCall(work, (seconds, outcome) => {
      try {
        observer(operation, seconds, this.handler, outcome);
      } catch {
        // metrics never fail a container operation
      }
    });
  }

  /** Global flags every invocation carries (also handed to conmon as --runtime-arg). */
  globalArgs(): string[] {
    const args = [`--root=${this.root}`];
    if (this.systemdCgroup) args.push('--systemd-cgroup');
    return args;
  }

  /** Runs the runtime with the global flags; never throws on a non-zero exit. */
  async run(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    let result: CommandResult;
    try {
      result = await runCommand(this.path, [...this.globalArgs(), ...args], { input: options.input, timeoutMs: options.timeoutMs ?? 60_000 });
    } catch (err) {
      throw internal(`${this.handler}: ${describeError(err)}`, err);
    }
    const code = result.code ?? (result.signal ? 128 + (osConstants.signals[result.signal] ?? 0) : 1);
    return { code: code === 0 && result.timedOut ? 1 : code, stdout: result.stdout.toString('utf8'), stderr: result.stderr.toString('utf8') };
  }

  private async must(args: string[], what: string, input?: string): Promise<RunResult> {
    const result = await this.run(args, { input });
    if (result.code !== 0) throw internal(`${this.handler} ${what}: ${runtimeMessage(result.stderr) || `exit status ${result.code}`}`);
    return result;
  }

  /** The runtime's view of a container; undefined when it does not know it. */
  async state(id: string): Promise<OciState | undefined> {
    return this.timed('state', () => this.stateUntimed(id));
  }

  private async stateUntimed(id: string): Promise<OciState | undefined> {
    const result = await this.run(['state', id]);
    if (result.code !== 0) {
      if (/does not exist|not exist|No such file/i.test(result.stderr)) return undefined;
      throw internal(`${this.handler} state ${id}: ${runtimeMessage(result.stderr)}`);
    }
    const parsed = JSON.parse(result.stdout) as { id: string; status: OciStatus; pid?: number; bundle: string };
    return { id: parsed.id, status: parsed.status, pid: parsed.pid ?? 0, bundle: parsed.bundle };
  }

  /**
   * Starts a created container. For runc this is what `runc start` does
   * itself: open the exec fifo in its state dir (runc init is blocked opening
   * its other end), read the "0" init writes and remove the fifo, so the
   * container's init execs the process. `exited` settles when the container's
   * monitor saw it exit: then nothing will ever write and the wait ends.
   * Anything unexpected (no fifo: not in the created state) is left to
   * `runtime start`, which gives the runtime's own answer.
   */
  async start(id: string, exited?: Promise<unknown>): Promise<void> {
    await this.timed('start', async () => {
      if (this.fastPaths && (await this.releaseExecFifo(id, exited))) return;
      await this.must(['start', id], `start ${id}`);
    });
  }

  private async releaseExecFifo(id: string, exited: Promise<unknown> | undefined): Promise<boolean> {
    const fifo = join(this.root, id, 'exec.fifo');
    try {
      if (!lstatSync(fifo).isFIFO()) return false;
    } catch {
      return false;
    }
    // The blocking open runs on a libuv worker; opening the fifo read-write
    // (which never blocks) is what wakes it when no writer will ever come.
    let waker: number | undefined;
    let opened = false;
    const wake = (): void => {
      if (opened || waker !== undefined) return;
      try {
        waker = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
      } catch {
        // the fifo is gone: the open already returned or failed
      }
    };
    const safetyNet = setTimeout(wake, 60_000);
    void exited?.then(wake, wake);
    let handle;
    try {
      handle = await openFile(fifo, fsConstants.O_RDONLY);
    } catch {
      return false;
    } finally {
      opened = true;
      clearTimeout(safetyNet);
      // Closed before reading: while it is open the read would wait for it.
      if (waker !== undefined) closeSync(waker);
    }
    let data = '';
    try {
      const buf = Buffer.alloc(16);
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        data += buf.subarray(0, bytesRead).toString('latin1');
      }
    } finally {
      await handle.close();
    }
    if (!data) throw internal(`${this.handler} start ${id}: container process is already dead`);
    try {
      unlinkSync(fifo);
    } catch {
      // already removed
    }
    return true;
  }

  /** Sends a signal to the init process (all: to every process of the container). */
  async kill(id: string, signal: string, all = false): Promise<void> {
    await this.timed('kill', () => this.killUntimed(id, signal, all));
  }

  private async killUntimed(id: string, signal: string, all: boolean): Promise<void> {
    const result = await this.run(['kill', ...(all ? ['--all'] : []), id, signal]);
    if (result.code === 0) return;
    // Already gone (or never started): nothing left to signal.
    if (/not running|process already finished|does not exist|no such process|container not running/i.test(result.stderr)) return;
    throw internal(`${this.handler} kill ${id} ${signal}: ${runtimeMessage(result.stderr)}`);
  }

  /** Deletes the runtime's record; succeeds when it is already gone. */
  async delete(id: string, force = false): Promise<void> {
    await this.timed('delete', () => this.deleteUntimed(id, force));
  }

  /**
   * Deletes a container whose init process has exited and been reaped (its
   * monitor recorded the exit): what `runc delete` does for a stopped
   * container with no hooks, removing the cgroups runc recorded in its
   * state.json and the state dir, without starting runc. Falls back to
   * `runtime delete --force` for anything else (processes left in the
   * cgroups, systemd-managed cgroups, another runtime, unreadable state).
   */
  async deleteExited(id: string): Promise<void> {
    await this.timed('delete', async () => {
      if (this.fastPaths && !this.systemdCgroup && (await this.removeStoppedState(id))) return;
      await this.deleteUntimed(id, true);
    });
  }

  /** Asynchronous throughout: cgroup rmdirs and the state dir's removal can take milliseconds each on a busy node. */
  private async removeStoppedState(id: string): Promise<boolean> {
    const dir = join(this.root, id);
    let state: { cgroup_paths?: Record<string, string>; config?: { Hooks?: Record<string, unknown[] | null> | null } };
    try {
      state = JSON.parse(await readFileAsync(join(dir, 'state.json'), 'utf8')) as typeof state;
    } catch (err) {
      // Never created or already deleted: nothing of runc's is left.
      return (err as NodeJS.ErrnoException).code === 'ENOENT' && !existsDir(dir);
    }
    if (Object.values(state.config?.Hooks ?? {}).some((list) => Array.isArray(list) && list.length > 0)) return false;
    const paths = [...new Set(Object.values(state.cgroup_paths ?? {}))];
    if (paths.some((p) => typeof p !== 'string' || !p.startsWith('/sys/fs/cgroup/'))) return false;
    // Processes left (a shared PID namespace's): runc kills them; leave every cgroup for it to find.
    const procs = await Promise.all(paths.map((path) => readFileAsync(join(path, 'cgroup.procs'), 'utf8').catch(() => '')));
    if (procs.some((text) => text.trim())) return false;
    const removed = await Promise.all(
      paths.map((path) =>
        rmdirAsync(path).then(
          () => true,
          // EBUSY: processes (a shared PID namespace's) or child cgroups remain.
          (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
        ),
      ),
    );
    if (removed.includes(false)) return false;
    await rmAsync(dir, { recursive: true, force: true });
    return true;
  }

  private async deleteUntimed(id: string, force: boolean): Promise<void> {
    const result = await this.run(['delete', ...(force ? ['--force'] : []), id]);
    if (result.code === 0) return;
    if (/does not exist|not exist|No such file/i.test(result.stderr)) return;
    throw internal(`${this.handler} delete ${id}: ${runtimeMessage(result.stderr)}`);
  }

  /** Applies OCI LinuxResources to the live container. */
  async update(id: string, resources: object): Promise<void> {
    await this.timed('update', () => this.updateUntimed(id, resources));
  }

  private async updateUntimed(id: string, resources: object): Promise<void> {
    const result = await this.run(['update', '--resources', '-', id], { input: JSON.stringify(resources) });
    if (result.code === 0) return;
    if (/does not exist|not exist/i.test(result.stderr)) throw notFound(`container ${id} is not known to ${this.handler}`);
    throw internal(`${this.handler} update ${id}: ${runtimeMessage(result.stderr)}`);
  }

  /** Freezes every process of the container (cgroup freezer). */
  async pause(id: string): Promise<void> {
    await this.timed('pause', () => this.must(['pause', id], `pause ${id}`));
  }

  async resume(id: string): Promise<void> {
    await this.timed('resume', () => this.must(['resume', id], `resume ${id}`));
  }

  /**
   * Global flags naming the criu binary: runc takes `--criu PATH`; crun links
   * libcriu and has no such flag.
   */
  criuArgs(criuPath: string): string[] {
    return basename(this.path) === 'runc' ? [`--criu=${criuPath}`] : [];
  }

  /**
   * `runtime checkpoint --leave-running`: criu writes the container's images
   * to imagesDir and its log (dump.log) to workDir; the container goes on
   * running. Never throws on a failed dump: the caller reads criu's log.
   */
  async checkpoint(id: string, options: { imagesDir: string; workDir: string; criuPath: string; timeoutMs: number }): Promise<RunResult> {
    return this.timed('checkpoint', () =>
      this.run([...this.criuArgs(options.criuPath), 'checkpoint', '--leave-running', '--image-path', options.imagesDir, '--work-path', options.workDir, id], {
        timeoutMs: options.timeoutMs,
      }),
    );
  }

  /**
   * Arguments for `runtime exec` of a process spec file (see
   * container/process-spec.ts execProcess), for ExecSync and interactive exec.
   */
  execArgs(id: string, processSpecPath: string, options: { pidFile?: string; tty?: boolean } = {}): string[] {
    const args = [...this.globalArgs(), 'exec', '--process', processSpecPath];
    if (options.pidFile) args.push('--pid-file', options.pidFile);
    if (options.tty) args.push('--tty');
    args.push(id);
    return args;
  }
}

function existsDir(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** runc and crun print logrus-style lines or JSON; keep the human part. */
export function runtimeMessage(stderr: string): string {
  const lines = stderr.trim().split('\n').filter(Boolean);
  const out: string[] = [];
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed.startsWith('{')) {
      try {
        const parsed = JSON.parse(trimmed) as { msg?: string; level?: string };
        if (parsed.msg) out.push(parsed.msg);
        continue;
      } catch {
        // not JSON after all
      }
    }
    const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(trimmed);
    out.push(msg ? msg[1].replace(/\\"/g, '"') : trimmed);
  }
  return out.join('; ').slice(0, 2000);
}
