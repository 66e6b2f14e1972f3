// One OCI runtime handler (runc or crun) as berth drives it: everything but
// `create`, which conmon runs so that the container outlives berthd. Each call
// runs the binary with the handler's --root, so two berthds (tests) never see
// each other's containers.
import { execFile, spawn } from 'node:child_process';
import { internal, notFound } from '../errors';

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

  constructor(options: OciRuntimeOptions) {
    this.handler = options.handler;
    this.path = options.path;
    this.root = options.root;
    this.systemdCgroup = options.systemdCgroup;
  }

  /** Global flags every invocation carries (also handed to conmon as --runtime-arg). */
  globalArgs(): string[] {
    const args = [`--root=${this.root}`];
    if (this.systemdCgroup) args.push('--systemd-cgroup');
    return args;
  }

  /** Runs the runtime with the global flags; never throws on a non-zero exit. */
  run(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        this.path,
        [...this.globalArgs(), ...args],
        { timeout: options.timeoutMs ?? 60_000, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
            reject(internal(`${this.handler}: cannot run ${this.path}: ${err.message}`, err));
            return;
          }
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
      if (options.input !== undefined) child.stdin?.end(options.input);
    });
  }

  private async must(args: string[], what: string, input?: string): Promise<RunResult> {
    const result = await this.run(args, { input });
    if (result.code !== 0) throw internal(`${this.handler} ${what}: ${runtimeMessage(result.stderr) || `exit status ${result.code}`}`);
    return result;
  }

  /** The runtime's view of a container; undefined when it does not know it. */
  async state(id: string): Promise<OciState | undefined> {
    const result = await this.run(['state', id]);
    if (result.code !== 0) {
      if (/does not exist|not exist|No such file/i.test(result.stderr)) return undefined;
      throw internal(`${this.handler} state ${id}: ${runtimeMessage(result.stderr)}`);
    }
    const parsed = JSON.parse(result.stdout) as { id: string; status: OciStatus; pid?: number; bundle: string };
    return { id: parsed.id, status: parsed.status, pid: parsed.pid ?? 0, bundle: parsed.bundle };
  }

  async start(id: string): Promise<void> {
    await this.must(['start', id], `start ${id}`);
  }

  /** Sends a signal to the init process (all: to every process of the container). */
  async kill(id: string, signal: string, all = false): Promise<void> {
    const result = await this.run(['kill', ...(all ? ['--all'] : []), id, signal]);
    if (result.code === 0) return;
    // Already gone (or never started): nothing left to signal.
    if (/not running|process already finished|does not exist|no such process|container not running/i.test(result.stderr)) return;
    throw internal(`${this.handler} kill ${id} ${signal}: ${runtimeMessage(result.stderr)}`);
  }

  /** Deletes the runtime's record; succeeds when it is already gone. */
  async delete(id: string, force = false): Promise<void> {
    const result = await this.run(['delete', ...(force ? ['--force'] : []), id]);
    if (result.code === 0) return;
    if (/does not exist|not exist|No such file/i.test(result.stderr)) return;
    throw internal(`${this.handler} delete ${id}: ${runtimeMessage(result.stderr)}`);
  }

  /** Applies OCI LinuxResources to the live container. */
  async update(id: string, resources: object): Promise<void> {
    const result = await this.run(['update', '--resources', '-', id], { input: JSON.stringify(resources) });
    if (result.code === 0) return;
    if (/does not exist|not exist/i.test(result.stderr)) throw notFound(`container ${id} is not known to ${this.handler}`);
    throw internal(`${this.handler} update ${id}: ${runtimeMessage(result.stderr)}`);
  }

  /**
   * Arguments for `runtime exec` of a process spec file, for callers that run it
   * themselves (ExecSync here, interactive exec in the streaming server).
   */
  execArgs(id: string, processSpecPath: string, options: { pidFile?: string; detach?: boolean; tty?: boolean; consoleSocket?: string } = {}): string[] {
    const args = [...this.globalArgs(), 'exec', '--process', processSpecPath];
    if (options.pidFile) args.push('--pid-file', options.pidFile);
    if (options.detach) args.push('--detach');
    if (options.consoleSocket) args.push('--console-socket', options.consoleSocket);
    args.push(id);
    return args;
  }

  /** Spawns `runtime exec`; the caller owns the child's stdio. */
  spawnExec(id: string, processSpecPath: string, pidFile: string) {
    return spawn(this.path, this.execArgs(id, processSpecPath, { pidFile }), { stdio: ['ignore', 'pipe', 'pipe'] });
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
