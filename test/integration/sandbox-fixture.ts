// Shared by the sandbox/CNI integration tests: a berthd with its own CNI conf
// dir, bridge, subnet and cache, pod configs, and a way to run busybox inside
// a pod's pinned network namespace.
import { execFileSync, spawnSync } from 'node:child_process';
import { after, afterEach, before } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

export async function startSandboxBerthd(net: SandboxTestNet, extra: { binDirs?: string[]; writeDefault?: boolean; tomlTail?: string } = {}): Promise<SandboxBerthd> {
  const dir = mkdtempSync(`/tmp/berth-sbx-${net.name}-`);
  const confDir = join(dir, 'net.d');
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

/**
 * One berthd for the describe block it is called in: started before its first
 * test, every pod removed after each test (so one failure does not cascade),
 * everything cleaned up after the block. The returned object is filled in by
 * the time the first test runs.
 */
export function sandboxBerthdForSuite(net: SandboxTestNet, extra: Parameters<typeof startSandboxBerthd>[1] = {}): SandboxBerthd {
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

/** True once the process is gone (or a zombie waiting for init to reap it). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}
