// Shared by the sandbox/CNI integration tests: a berthd with its own CNI conf
// dir, bridge, subnet and cache, pod configs, and a way to run busybox inside
// a pod's pinned network namespace.
import { execFileSync, spawnSync } from 'node:child_process';
import { after, afterEach, before } from 'node:test';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PodSandboxConfig } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';

export interface SandboxTestNet {
  /** Network name, bridge (≤ 15 chars) and subnet unique to one test file. */
  name: string;
  bridge: string;
  subnet: string;
}

export interface SandboxBerthd {
  berthd: BerthdProcess;
  confDir: string;
  cacheDir: string;
  nsDir: string;
  net: SandboxTestNet;
  /** Removes the daemon and everything the network left on the host (bridge, host-local state). */
  cleanup(): Promise<void>;
}

export interface SandboxBerthdExtra {
  binDirs?: string[];
  writeDefault?: boolean;
  tomlTail?: string;
  /** A CNI config put into the conf dir before berthd starts (file name, content). */
  conflist?: { file: string; list: object };
}

export async function startSandboxBerthd(net: SandboxTestNet, extra: SandboxBerthdExtra = {}): Promise<SandboxBerthd> {
  const dir = mkdtempSync(`/tmp/berth-sbx-${net.name}-`);
  const confDir = join(dir, 'net.d');
  if (extra.conflist) {
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, extra.conflist.file), JSON.stringify(extra.conflist.list));
  }
  const cacheDir = join(dir, 'cni-cache');
  const nsDir = join(dir, 'ns');
  const binDirs = extra.binDirs ?? ['/usr/lib/cni', '/opt/cni/bin'];
  const extraToml = [
    '[cni]',
    `conf_dir = ${JSON.stringify(confDir)}`,
    `cache_dir = ${JSON.stringify(cacheDir)}`,
    `bin_dirs = ${JSON.stringify(binDirs)}`,
    `write_default_conflist = ${extra.writeDefault ?? true}`,
    `default_network_name = ${JSON.stringify(net.name)}`,
    `default_bridge = ${JSON.stringify(net.bridge)}`,
    `default_subnet = ${JSON.stringify(net.subnet)}`,
    '[sandbox]',
    `namespace_dir = ${JSON.stringify(nsDir)}`,
    extra.tomlTail ?? '',
  ].join('\n');
  const berthd = await startBerthd({ extraToml });
  return {
    berthd,
    confDir,
    cacheDir,
    nsDir,
    net,
    async cleanup() {
      await removeAllPods(berthd).catch(() => undefined);
      await berthd.cleanup();
      spawnSync('umount', ['-l', nsDir]);
      spawnSync('ip', ['link', 'del', net.bridge]);
      rmSync(join('/var/lib/cni/networks', net.name), { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface NetworkInUse {
  file: string;
  name: string;
  berthFallback: boolean;
  config: { plugins: { ipam?: { ranges?: unknown } }[] };
}

/** The CNI network berthd gives new pods now (Status verbose), or null when it has none. */
export async function networkInUse(berthd: BerthdProcess): Promise<NetworkInUse | null> {
  const status = await berthd.client.call('Status', { verbose: true });
  return JSON.parse(status.info.cniNetwork ?? 'null') as NetworkInUse | null;
}

/** Waits (bounded) until the network berthd gives new pods satisfies `wanted`. */
export async function waitForNetwork(berthd: BerthdProcess, wanted: (used: NetworkInUse | null) => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (wanted(await networkInUse(berthd))) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`berthd never switched to ${what}; uses ${JSON.stringify(await networkInUse(berthd))}`);
}

/**
 * Drops a CNI config into the watched conf dir the way an installer does (written aside, renamed in; null
 * removes the file) and waits until berthd gives new pods the network `expect` names: a file name (null:
 * none) and, when a file is rewritten in place, the network's name.
 */
export async function dropNetworkConfig(s: SandboxBerthd, file: string, list: object | null, expect: { file: string | null; name?: string }): Promise<void> {
  const path = join(s.confDir, file);
  if (list === null) rmSync(path, { force: true });
  else {
    writeFileSync(`${path}.partial`, JSON.stringify(list));
    renameSync(`${path}.partial`, path);
  }
  const wantedFile = expect.file === null ? null : join(s.confDir, expect.file);
  await waitForNetwork(
    s.berthd,
    (used) => (used?.file ?? null) === wantedFile && (expect.name === undefined || used?.name === expect.name),
    JSON.stringify(expect),
  );
}

/**
 * One berthd for the describe block it is called in: started before its first
 * test, every pod removed after each test (so one failure does not cascade),
 * everything cleaned up after the block. The returned object is filled in by
 * the time the first test runs.
 */
export function sandboxBerthdForSuite(net: SandboxTestNet, extra: SandboxBerthdExtra = {}): SandboxBerthd {
  const suite = {} as SandboxBerthd;
  before(async () => {
    Object.assign(suite, await startSandboxBerthd(net, extra));
  });
  after(async () => {
    await suite.cleanup?.();
  });
  afterEach(async () => {
    await removeAllPods(suite.berthd);
  });
  return suite;
}

let podCounter = 0;

export function podConfig(name: string, overrides: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  podCounter++;
  return {
    metadata: { name, namespace: 'berth-test', uid: `uid-${process.pid}-${podCounter}-${name}`, attempt: 0 },
    hostname: name,
    log_directory: '',
    dns_config: { servers: ['10.96.0.10'], searches: ['berth-test.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    port_mappings: [],
    labels: { app: 'berth-test', pod: name },
    annotations: { 'berth.test/file': 'sandbox' },
    linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    ...overrides,
  };
}

/** Runs busybox inside a pinned network namespace; returns stdout (throws on failure). */
export function inNetns(netnsPath: string, args: string[], timeoutMs = 15_000): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, 'busybox', ...args], { timeout: timeoutMs, encoding: 'utf8' });
}

/** Interfaces enslaved to a bridge (the pods' host-side veths), for leak checks that other tests on the host cannot disturb. */
export function bridgePorts(bridge: string): string[] {
  const r = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1].trim().split('@')[0]);
}

/** Interfaces of the host. */
export function hostLinks(): string[] {
  return execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1].trim().split('@')[0]);
}

/** iptables-save lines that mention this test's network or an address of its /24 subnet (portmap/bridge leave rules tagged with the network name). */
export function iptablesLinesFor(net: SandboxTestNet): string[] {
  const text = execFileSync('iptables-save', [], { encoding: 'utf8' });
  const prefix = net.subnet.split('.').slice(0, 3).join('.');
  return text
    .split('\n')
    .filter((l) => l.startsWith('-A') && (l.includes(net.name) || l.includes(`${prefix}.`)));
}

export function mountsUnder(path: string): string[] {
  return execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(path));
}

/** Removes every pod the daemon knows (used after each test so one failure does not cascade). */
export async function removeAllPods(berthd: BerthdProcess): Promise<void> {
  const { items } = await berthd.client.call('ListPodSandbox', {});
  for (const item of items) await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: item.id });
}

export interface StartedContainerSpec {
  podId: string;
  sandboxConfig: PodSandboxConfig;
  image: string;
  name: string;
  command: string[];
  /** Extra ContainerConfig fields (tty, stdin, linux...). */
  extra?: Record<string, unknown>;
}

/** Creates and starts a container in a pod and resolves with its id once it is RUNNING. */
export async function startContainerInPod(berthd: BerthdProcess, spec: StartedContainerSpec): Promise<string> {
  const { container_id } = await berthd.client.call('CreateContainer', {
    pod_sandbox_id: spec.podId,
    config: {
      metadata: { name: spec.name, attempt: 0 },
      image: { image: spec.image },
      command: spec.command,
      log_path: `${spec.name}.log`,
      linux: {},
      ...spec.extra,
    },
    sandbox_config: spec.sandboxConfig,
  });
  await berthd.client.call('StartContainer', { container_id });
  for (let i = 0; i < 400; i++) {
    const st = await berthd.client.call('ContainerStatus', { container_id });
    if (st.status?.state === 'CONTAINER_RUNNING') return container_id;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${spec.name} never ran`);
}

/** Host pids of live (not zombie) processes whose command line is exactly argv: a container's process found from the host. */
export function hostPidsRunning(argv: string[]): number[] {
  const wanted = `${argv.join('\0')}\0`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'latin1') === wanted) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** True once the process is gone (or a zombie waiting for init to reap it). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/**
 * Runs `sleep` from `image` in a new host-network pod (no CNI needed) and returns what `cmd` prints when
 * executed in it: proof that the image's layers and config made a working container.
 */
export async function outputOfContainerFrom(berthd: BerthdProcess, image: string, name: string, cmd: string[]): Promise<string> {
  const sandboxConfig = podConfig(name, {
    linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
  });
  const { pod_sandbox_id: podId } = await berthd.client.call('RunPodSandbox', { config: sandboxConfig });
  const id = await startContainerInPod(berthd, { podId, sandboxConfig, image, name, command: ['sleep', '1000'] });
  const exec = await berthd.client.call('ExecSync', { container_id: id, cmd, timeout: '10' } as never);
  return exec.stdout.toString();
}
