// The CNI conf dir as a cluster uses it, through a real berthd and the real
// bridge/host-local plugins in real network namespaces: a conflist dropped in
// while pods run is used for new pods, old pods keep their network and are
// torn down through the config cached at ADD (even once their file is replaced
// or gone), berth's fallback gives way; NetworkReady follows the dir; the
// kubelet's pod CIDR goes into berth's fallback only; the runtime capabilities
// reach the plugins that declare them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { DEFAULT_CONFLIST_FILE, defaultConflist } from '../../cni/default-conflist';
import { grpcCode } from '../support/cri-client';
import { gatewayOf, testNetwork, type TestNetwork } from '../support/test-network';
import {
  bridgePorts, dropNetworkConfig, inNetns, iptablesLinesFor, networkInUse, podConfig, startSandboxBerthd, waitForNetwork, type SandboxBerthd,
} from './sandbox-fixture';

const FALLBACK = testNetwork({ name: 'bt-ncf-fallback', bridge: 'bt-ncf0', subnet: '10.86.5.0/24' });
const CLUSTER_A = testNetwork({ name: 'bt-ncf-cluster-a', bridge: 'bt-ncf1', subnet: '10.86.6.0/24' });
const CLUSTER_B = testNetwork({ name: 'bt-ncf-cluster-b', bridge: 'bt-ncf2', subnet: '10.86.9.0/24' });
/** Only its subnet is used: the pod CIDR the kubelet sends. */
const POD_CIDR_NET = testNetwork({ name: 'bt-ncf-podcidr', bridge: 'bt-ncf5', subnet: '10.86.7.0/24' });
const POD_CIDR = POD_CIDR_NET.subnet;
const READY_NET = testNetwork({ name: 'bt-ncf-ready', bridge: 'bt-ncf3', subnet: '10.86.10.0/24' });
const CAPS_NET = testNetwork({ name: 'bt-ncf-caps', bridge: 'bt-ncf4', subnet: '10.86.8.0/24' });

function ipFiles(name: string): string[] {
  const d = join('/var/lib/cni/networks', name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
}

function removeNetworkLeftovers(nets: TestNetwork[]): void {
  for (const net of nets) {
    spawnSync('ip', ['link', 'del', net.bridge]);
    rmSync(join('/var/lib/cni/networks', net.name), { recursive: true, force: true });
  }
}

async function runPod(s: SandboxBerthd, name: string, extra: Parameters<typeof podConfig>[1] = {}): Promise<{ id: string; ip: string; netns: string }> {
  const c = s.berthd.client;
  const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config: podConfig(name, extra), runtime_handler: '' });
  const st = await c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
  const info = JSON.parse(st.info.info) as { namespaces: { network: string } };
  return { id, ip: st.status!.network!.ip, netns: info.namespaces.network };
}

function inSubnet(ip: string, net: TestNetwork | string): boolean {
  const subnet = typeof net === 'string' ? net : net.subnet;
  return ip.startsWith(`${subnet.split('.').slice(0, 3).join('.')}.`);
}

async function networkReady(s: SandboxBerthd): Promise<{ status: boolean; reason: string; message: string }> {
  const st = await s.berthd.client.call('Status', { verbose: false });
  const c = st.status!.conditions.find((x) => x.type === 'NetworkReady')!;
  return { status: c.status, reason: c.reason, message: c.message };
}

describe('a CNI config that appears while pods run', () => {
  let s: SandboxBerthd;
  before(async () => {
    s = await startSandboxBerthd(FALLBACK);
  });
  after(async () => {
    await s?.cleanup();
    removeNetworkLeftovers([CLUSTER_A, CLUSTER_B]);
  });

  test('new pods get the new network, old pods keep theirs and are torn down through the config cached at ADD', async () => {
    const c = s.berthd.client;
    const initial = await networkInUse(s.berthd);
    assert.deepEqual([initial?.file, initial?.name, initial?.berthFallback], [join(s.confDir, DEFAULT_CONFLIST_FILE), FALLBACK.name, true]);
    const onFallback = await runPod(s, 'on-fallback');
    assert.ok(inSubnet(onFallback.ip, FALLBACK), onFallback.ip);

    // The cluster's DaemonSet installs its network; berth's fallback gives way without a restart.
    await dropNetworkConfig(s, '10-cluster.conflist', defaultConflist(CLUSTER_A), { file: '10-cluster.conflist', name: CLUSTER_A.name });
    const onA = await runPod(s, 'on-cluster-a');
    assert.ok(inSubnet(onA.ip, CLUSTER_A), `a new pod gets the cluster's network, got ${onA.ip}`);
    assert.equal(bridgePorts(CLUSTER_A.bridge).length, 1);
    assert.equal(bridgePorts(FALLBACK.bridge).length, 1, 'the fallback network got no new pod');
    assert.match(inNetns(onFallback.netns, ['ping', '-c', '1', '-W', '5', gatewayOf(FALLBACK)]), /1 packets received/);

    // The same file rewritten with another network: new pods follow it.
    await dropNetworkConfig(s, '10-cluster.conflist', defaultConflist(CLUSTER_B), { file: '10-cluster.conflist', name: CLUSTER_B.name });
    const onB = await runPod(s, 'on-cluster-b');
    assert.ok(inSubnet(onB.ip, CLUSTER_B), onB.ip);

    // The pod on network A is removed after A's config was replaced: its DEL replays A.
    await c.call('RemovePodSandbox', { pod_sandbox_id: onA.id });
    assert.deepEqual(ipFiles(CLUSTER_A.name), [], "the address went back to A's host-local");
    assert.deepEqual(bridgePorts(CLUSTER_A.bridge), []);
    assert.deepEqual(iptablesLinesFor(CLUSTER_A), []);

    // The cluster's file goes away: berth's fallback is the network again, and B's pod still detaches from B.
    await dropNetworkConfig(s, '10-cluster.conflist', null, { file: DEFAULT_CONFLIST_FILE });
    await c.call('RemovePodSandbox', { pod_sandbox_id: onB.id });
    assert.deepEqual(ipFiles(CLUSTER_B.name), []);
    assert.deepEqual(bridgePorts(CLUSTER_B.bridge), []);
    assert.deepEqual(iptablesLinesFor(CLUSTER_B), []);

    await c.call('RemovePodSandbox', { pod_sandbox_id: onFallback.id });
    assert.deepEqual(ipFiles(FALLBACK.name), []);
    assert.deepEqual(bridgePorts(FALLBACK.bridge), []);
    assert.deepEqual(readdirSync(join(s.cacheDir, 'attachments')), []);
  });

  test("the kubelet's pod CIDR goes into berth's fallback network once no pod uses its old subnet; new pods get addresses from it", async () => {
    const c = s.berthd.client;
    const ranges = () => (JSON.parse(readFileSync(join(s.confDir, DEFAULT_CONFLIST_FILE), 'utf8')) as { plugins: { ipam?: { ranges: unknown } }[] }).plugins[0].ipam!.ranges;
    const old = await runPod(s, 'before-pod-cidr');
    await c.call('UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: POD_CIDR } } });
    assert.deepEqual(ranges(), [[{ subnet: FALLBACK.subnet }]], 'the bridge keeps the gateway of the pod still on it');
    assert.match(inNetns(old.netns, ['ping', '-c', '1', '-W', '5', gatewayOf(FALLBACK)]), /1 packets received/);

    await c.call('RemovePodSandbox', { pod_sandbox_id: old.id });
    await waitForNetwork(s.berthd, (used) => JSON.stringify(used?.config.plugins[0].ipam?.ranges) === JSON.stringify([[{ subnet: POD_CIDR }]]), POD_CIDR);
    assert.deepEqual(ranges(), [[{ subnet: POD_CIDR }]]);
    const pod = await runPod(s, 'in-pod-cidr');
    assert.ok(inSubnet(pod.ip, POD_CIDR), pod.ip);
    assert.match(inNetns(pod.netns, ['ping', '-c', '1', '-W', '5', gatewayOf(POD_CIDR_NET)]), /1 packets received/);
    await c.call('RemovePodSandbox', { pod_sandbox_id: pod.id });
    assert.deepEqual(ipFiles(FALLBACK.name), []);
  });
});

describe('NetworkReady', () => {
  let s: SandboxBerthd;
  before(async () => {
    s = await startSandboxBerthd(READY_NET, { writeDefault: false });
  });
  after(async () => {
    await s?.cleanup();
  });

  test('is false with a reason and message while no usable config exists, true once one appears', async () => {
    assert.deepEqual(readdirSync(s.confDir), [], 'berth writes no fallback when told not to');
    const none = await networkReady(s);
    assert.equal(none.status, false);
    assert.equal(none.reason, 'NetworkPluginNotReady');
    assert.match(none.message, new RegExp(`no CNI network config found in ${s.confDir}`));
    await assert.rejects(s.berthd.client.call('RunPodSandbox', { config: podConfig('too-early'), runtime_handler: '' }), (e: unknown) => {
      assert.equal(grpcCode(e), grpcStatus.FAILED_PRECONDITION);
      assert.match((e as Error).message, /no CNI network config found/);
      return true;
    });

    await dropNetworkConfig(s, '20-missing.conflist', { cniVersion: '1.0.0', name: 'bt-missing', plugins: [{ type: 'bt-no-such-plugin' }] }, { file: '20-missing.conflist' });
    const missing = await networkReady(s);
    assert.equal(missing.status, false);
    assert.equal(missing.reason, 'NetworkPluginNotReady');
    assert.match(missing.message, /CNI plugin "bt-no-such-plugin" of network "bt-missing" not found/);

    await dropNetworkConfig(s, '10-ready.conflist', defaultConflist(READY_NET), { file: '10-ready.conflist' });
    assert.deepEqual(await networkReady(s), { status: true, reason: '', message: '' });
    const pod = await runPod(s, 'ready');
    assert.ok(inSubnet(pod.ip, READY_NET), pod.ip);
  });
});

describe('runtime capabilities', () => {
  let s: SandboxBerthd;
  let binDir: string;
  const conflist = () => {
    const list = defaultConflist(CAPS_NET);
    list.plugins = [
      list.plugins[0],
      { type: 'bt-record', capabilities: { portMappings: true, bandwidth: true, ipRanges: true, dns: true } },
      { type: 'bt-record', capabilities: { dns: false } },
    ];
    return list;
  };

  before(async () => {
    binDir = mkdtempSync('/tmp/berth-ncf-bin-');
    // Records what it is handed and passes the chain's result on, as a CNI plugin must.
    writeFileSync(
      join(binDir, 'bt-record'),
      [
        `#!${process.execPath}`,
        "const fs = require('fs');",
        "const conf = JSON.parse(fs.readFileSync(0, 'utf8'));",
        `fs.appendFileSync(${JSON.stringify(join(binDir, 'seen.jsonl'))}, JSON.stringify({ command: process.env.CNI_COMMAND, capabilities: conf.capabilities, runtimeConfig: conf.runtimeConfig ?? null }) + '\\n');`,
        "if (process.env.CNI_COMMAND === 'ADD') process.stdout.write(JSON.stringify(conf.prevResult));",
      ].join('\n'),
    );
    chmodSync(join(binDir, 'bt-record'), 0o755);
    s = await startSandboxBerthd(CAPS_NET, { binDirs: [binDir, '/usr/lib/cni'], writeDefault: false, conflist: { file: '10-caps.conflist', list: conflist() } });
  });
  after(async () => {
    await s?.cleanup();
    rmSync(binDir, { recursive: true, force: true });
  });

  test('portMappings, bandwidth, ipRanges and dns reach every plugin that declares them, at ADD and DEL', async () => {
    const c = s.berthd.client;
    const before = readFileSync(join(s.confDir, '10-caps.conflist'), 'utf8');
    await c.call('UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: CAPS_NET.subnet } } });
    assert.equal(readFileSync(join(s.confDir, '10-caps.conflist'), 'utf8'), before, "a cluster's config is never rewritten");
    const pod = await runPod(s, 'caps', {
      port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: 18080, host_ip: '' }],
      annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '1M' },
    });
    await c.call('RemovePodSandbox', { pod_sandbox_id: pod.id });

    const seen = readFileSync(join(binDir, 'seen.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { command: string; capabilities: object; runtimeConfig: unknown });
    const expected = {
      portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
      bandwidth: { ingressRate: 10_000_000, ingressBurst: 2 ** 31 - 1, egressRate: 1_000_000, egressBurst: 2 ** 31 - 1 },
      ipRanges: [[{ subnet: CAPS_NET.subnet }]],
      dns: { servers: ['10.96.0.10'], searches: ['berth-test.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    };
    const declaring = seen.filter((e) => 'ipRanges' in (e.capabilities ?? {}));
    const silent = seen.filter((e) => !('ipRanges' in (e.capabilities ?? {})));
    assert.deepEqual(declaring.map((e) => e.command), ['ADD', 'DEL']);
    for (const e of declaring) assert.deepEqual(e.runtimeConfig, expected, `${e.command} got every capability it declared`);
    assert.deepEqual(silent.map((e) => [e.command, e.runtimeConfig]), [['ADD', null], ['DEL', null]], 'a plugin that declares none gets none');
    assert.deepEqual(ipFiles(CAPS_NET.name), []);
  });
});
