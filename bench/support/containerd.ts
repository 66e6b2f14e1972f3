// containerd (Debian's 1.6) as the reference runtime, with a config, root,
// state, socket and CNI network of its own, so it never meets a system
// containerd or another harness. Stopped by PID; its state is removed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CriClient } from '../../test/support/cri-client';
import { CNI_BIN_DIR, writeBridgeConflist } from './cni-network';
import { deleteLink, forceDeleteRuncContainers, pidsWithArgument, unmountUnder } from './host-cleanup';

export { CONTAINERD_BRIDGE, CONTAINERD_SUBNET } from './bench-slot';
import { CONTAINERD_BRIDGE, CONTAINERD_SUBNET } from './bench-slot';
const RUN_BASE = '/run/berth-bench';

export interface ContainerdOptions {
  /** Sandbox (pause) image, e.g. 127.0.0.1:5000/bench/pause:1. */
  sandboxImage: string;
  /** Registries (host:port) pulled over plain HTTP. */
  plainHttpRegistries: string[];
  binary?: string;
  runc?: string;
  logLevel?: string;
}

export class ContainerdProcess {
  /** Persistent root (content, snapshots, metadata) on disk, like berth's. */
  readonly dir: string;
  readonly root: string;
  /** Volatile state and the socket under /run. */
  readonly runDir: string;
  readonly state: string;
  readonly socket: string;
  readonly configPath: string;
  readonly cniConfDir: string;
  readonly logPath: string;
  client!: CriClient;
  private child?: ChildProcess;
  private logChunks: Buffer[] = [];

  constructor(private readonly options: ContainerdOptions) {
    this.dir = mkdtempSync('/tmp/berth-bench-containerd-');
    this.root = join(this.dir, 'root');
    mkdirSync(RUN_BASE, { recursive: true });
    this.runDir = mkdtempSync(join(RUN_BASE, 'containerd-'));
    this.state = join(this.runDir, 'state');
    this.socket = join(this.runDir, 'containerd.sock');
    this.configPath = join(this.dir, 'config.toml');
    this.cniConfDir = join(this.dir, 'cni', 'net.d');
    this.logPath = join(this.dir, 'containerd.log');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  logs(): string {
    return Buffer.concat(this.logChunks).toString('utf8');
  }

  /** Blob files of the content store (for checking a removed image is really gone). */
  contentBlobPath(digest: string): string {
    return join(this.root, 'io.containerd.content.v1.content', 'blobs', ...digest.split(':'));
  }

  snapshotsDir(): string {
    return join(this.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
  }

  private writeConfig(): void {
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    const mirrors = this.options.plainHttpRegistries.flatMap((host) => [
      `[${cri}.registry.mirrors."${host}"]`,
      `  endpoint = ["http://${host}"]`,
    ]);
    const toml = [
      'version = 2',
      `root = ${JSON.stringify(this.root)}`,
      `state = ${JSON.stringify(this.state)}`,
      'oom_score = 0',
      '[grpc]',
      `  address = ${JSON.stringify(this.socket)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${this.socket}.ttrpc`)}`,
      '[debug]',
      '  address = ""',
      `  level = ${JSON.stringify(this.options.logLevel ?? 'warn')}`,
      '[metrics]',
      '  address = ""',
      `[${cri}]`,
      `  sandbox_image = ${JSON.stringify(this.options.sandboxImage)}`,
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      '  enable_selinux = false',
      // root here lacks CAP_SYS_RESOURCE: runc cannot set the sandbox's -998.
      '  restrict_oom_score_adj = true',
      `[${cri}.containerd]`,
      '  snapshotter = "overlayfs"',
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.runc.options]`,
      `  BinaryName = ${JSON.stringify(this.options.runc ?? '/usr/sbin/runc')}`,
      `  Root = ${JSON.stringify(join(this.state, 'runc'))}`,
      '  SystemdCgroup = false',
      `[${cri}.cni]`,
      `  bin_dir = ${JSON.stringify(CNI_BIN_DIR)}`,
      `  conf_dir = ${JSON.stringify(this.cniConfDir)}`,
      '  max_conf_num = 1',
      ...mirrors,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(join(this.root, 'opt'))}`,
      '',
    ];
    writeFileSync(this.configPath, toml.join('\n'));
    writeBridgeConflist(this.cniConfDir, {
      name: 'bench-containerd',
      bridge: CONTAINERD_BRIDGE,
      subnet: CONTAINERD_SUBNET,
      ipamDir: join(this.dir, 'cni', 'ipam'),
    });
  }

  /** pollMs: how often readiness is asked (the restart benchmark asks often). */
  async start(timeoutMs = 60_000, pollMs = 100): Promise<void> {
    mkdirSync(this.root, { recursive: true });
    this.writeConfig();
    const child = spawn(this.options.binary ?? 'containerd', ['--config', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (b: Buffer) => this.logChunks.push(b));
    child.stderr!.on('data', (b: Buffer) => this.logChunks.push(b));
    this.client = new CriClient(this.socket);
    const deadline = Date.now() + timeoutMs;
    let lastProblem = 'socket not there yet';
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`containerd exited during start (code ${child.exitCode}):\n${this.logs().slice(-4000)}`);
      }
      if (existsSync(this.socket)) {
        try {
          const status = await this.client.call('Status', { verbose: false }, { timeoutMs: 2000 });
          const conditions = status.status?.conditions ?? [];
          const notReady = ['RuntimeReady', 'NetworkReady'].filter((t) => !conditions.some((c) => c.type === t && c.status));
          if (notReady.length === 0) return;
          lastProblem = `not ready: ${notReady.join(', ')}`;
        } catch (err) {
          lastProblem = (err as Error).message;
        }
      }
      if (Date.now() > deadline) throw new Error(`containerd not ready within ${timeoutMs} ms (${lastProblem}):\n${this.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Stops containerd (SIGTERM; its shims and containers keep running). */
  async stop(): Promise<void> {
    this.client?.close();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }

  /** Removes every pod containerd still has (containers and shims go with them). */
  async removeAllPods(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    try {
      const { items } = await this.client.call('ListPodSandbox', {}, { timeoutMs: 10_000 });
      for (const pod of items) {
        await this.client.call('StopPodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
        await this.client.call('RemovePodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
      }
    } catch {
      // containerd unreachable: the shim sweep below still ends what is left
    }
  }

  /** Stops containerd by PID, ends shims serving its socket, unmounts and removes its directories and bridge. */
  async cleanup(): Promise<void> {
    await this.removeAllPods();
    this.client?.close();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    // A shim outlives containerd; ours name our socket as their -address.
    for (const pid of pidsWithArgument(this.socket)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    const leftovers = forceDeleteRuncContainers(join(this.state, 'runc'), this.options.runc ?? '/usr/sbin/runc');
    if (leftovers.length) console.error(`bench: containerd left ${leftovers.length} runc container(s); force-deleted`);
    unmountUnder(this.state);
    unmountUnder(this.root);
    rmSync(this.runDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
    deleteLink(CONTAINERD_BRIDGE);
  }
}

export async function startContainerd(options: ContainerdOptions): Promise<ContainerdProcess> {
  const ctrd = new ContainerdProcess(options);
  try {
    await ctrd.start();
  } catch (err) {
    await ctrd.cleanup();
    throw err;
  }
  return ctrd;
}
