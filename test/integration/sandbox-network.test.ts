// Pod networking through a real berthd and the real bridge/host-local/portmap
// plugins: pods reach each other, hostPorts reach pods, host-network pods use
// the host's namespaces, a failing plugin leaves no half-made pod, and many
// pods at once leak nothing.
import { gatewayOf, testNetwork } from '../support/test-network';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFLIST_FILE, defaultConflist } from '../../cni/default-conflist';
import {
  bridgePorts, inNetns, iptablesLinesFor, mountsUnder, podConfig, sandboxBerthdForSuite, startSandboxBerthd, type SandboxBerthd,
} from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-sbx-net', bridge: 'bt-sbx1', subnet: '10.86.2.0/24' });
const FAIL_NET = testNetwork({ name: 'bt-sbx-fail', bridge: 'bt-sbx2', subnet: '10.86.3.0/24' });
const GATEWAY = gatewayOf(NET);

interface VerboseInfo {
  namespaces: { network: string; ipc: string; uts: string };
  files: { hosts: string; resolvConf: string; hostname: string; shm: string };
}

function ipFiles(name: string): string[] {
  const d = join('/var/lib/cni/networks', name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
}

/** Reads what a TCP server at host:port sends, or rejects after a bounded wait. */
function readFrom(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${host}:${port}`));
    }, 10_000);
    sock.on('data', (b: Buffer) => chunks.push(b));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

describe('pod networking', () => {
  const s = sandboxBerthdForSuite(NET);

  async function runPod(name: string, extra: Parameters<typeof podConfig>[1] = {}): Promise<{ id: string; ip: string; info: VerboseInfo }> {
    const c = s.berthd.client;
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config: podConfig(name, extra), runtime_handler: '' });
    const st = await c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    return { id, ip: st.status!.network!.ip, info: JSON.parse(st.info.info) as VerboseInfo };
  }

  test('the default conflist is written and Status reports the network ready', async () => {
    const files = readdirSync(s.confDir);
    assert.deepEqual(files, [DEFAULT_CONFLIST_FILE]);
    const list = JSON.parse(readFileSync(join(s.confDir, files[0]), 'utf8')) as { plugins: { type: string; bridge?: string }[] };
    assert.deepEqual(list.plugins.map((p) => p.type), ['bridge', 'portmap', 'loopback']);
    assert.equal(list.plugins[0].bridge, NET.bridge);
    const status = await s.berthd.client.call('Status', { verbose: false });
    const network = status.status!.conditions.find((c) => c.type === 'NetworkReady');
    assert.equal(network?.status, true);
  });

  test('two pods reach each other by IP', async () => {
    const a = await runPod('ping-a');
    const b = await runPod('ping-b');
    assert.notEqual(a.ip, b.ip);
    assert.match(inNetns(a.info.namespaces.network, ['ping', '-c', '1', '-W', '5', b.ip]), /1 packets received/);
    assert.match(inNetns(b.info.namespaces.network, ['ping', '-c', '1', '-W', '5', a.ip]), /1 packets received/);
  });

  test('a hostPort mapping reaches the pod', async () => {
    const pod = await runPod('hostport', { port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: 18090, host_ip: '' }] });
    const listener = spawn('nsenter', [`--net=${pod.info.namespaces.network}`, 'busybox', 'nc', '-l', '-p', '8080', '-e', 'echo', 'berth-pong'], { stdio: 'ignore' });
    try {
      let answer = '';
      for (let i = 0; i < 50 && !answer.includes('berth-pong'); i++) {
        answer = await readFrom(GATEWAY, 18090).catch(() => '');
        if (!answer) await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(answer, /berth-pong/);
    } finally {
      listener.kill('SIGKILL');
    }
  });

  test('a host-network pod uses the host network and UTS namespaces and files', async () => {
    const pod = await runPod('hostnet', {
      hostname: '',
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE' } }, sysctls: {} },
    });
    assert.equal(pod.ip, '');
    assert.equal(pod.info.namespaces.network, '');
    assert.equal(pod.info.namespaces.uts, '');
    assert.equal(pod.info.namespaces.ipc, '');
    assert.equal(pod.info.files.shm, '');
    assert.equal(readFileSync(pod.info.files.hostname, 'utf8'), `${hostname()}\n`);
    assert.equal(readFileSync(pod.info.files.hosts, 'utf8'), readFileSync('/etc/hosts', 'utf8'));
    assert.equal(readdirSync(join(s.cacheDir, 'attachments')).length, 0, 'no CNI attachment');
  });

  test('20 pods created and removed concurrently leak nothing', async () => {
    const c = s.berthd.client;
        const rulesBefore = iptablesLinesFor(NET);
    const names = Array.from({ length: 20 }, (_, i) => `many-${i}`);
    const ids = await Promise.all(names.map((n) => c.call('RunPodSandbox', { config: podConfig(n), runtime_handler: '' }).then((r) => r.pod_sandbox_id)));
    assert.equal(new Set(ids).size, 20);
    const ips = (await Promise.all(ids.map((id) => c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false })))).map((st) => st.status!.network!.ip);
    assert.equal(new Set(ips).size, 20);
    assert.equal(ipFiles(NET.name).length, 20);
    assert.equal(bridgePorts(NET.bridge).length, 20);
    await Promise.all(ids.map((id) => c.call('RemovePodSandbox', { pod_sandbox_id: id })));
    assert.deepEqual((await c.call('ListPodSandbox', {})).items, []);
    assert.deepEqual(ipFiles(NET.name), []);
    assert.deepEqual(bridgePorts(NET.bridge), [], 'no veth left on the bridge');
    assert.deepEqual(iptablesLinesFor(NET), rulesBefore);
    for (const kind of ['net', 'ipc', 'uts']) assert.deepEqual(readdirSync(join(s.nsDir, kind)), []);
    assert.deepEqual(mountsUnder(join(s.berthd.state, 'sandboxes')), []);
    assert.deepEqual(readdirSync(join(s.berthd.state, 'sandboxes')), []);
  });
});

describe('a failing CNI plugin', () => {
  let s: SandboxBerthd;
  let binDir: string;
  before(async () => {
    binDir = mkdtempSync('/tmp/berth-sbx-failbin-');
    writeFileSync(
      join(binDir, 'bt-refuse'),
      '#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then echo \'{"cniVersion":"1.0.0","code":100,"msg":"bt-refuse: no address for this pod","details":"quota"}\'; exit 1; fi\nexit 0\n',
    );
    chmodSync(join(binDir, 'bt-refuse'), 0o755);
    const list = defaultConflist(FAIL_NET);
    list.plugins.splice(1, 0, { type: 'bt-refuse' });
    s = await startSandboxBerthd(FAIL_NET, { binDirs: [binDir, '/usr/lib/cni'], writeDefault: false, conflist: { file: '10-fail.conflist', list } });
  });
  after(async () => {
    await s?.cleanup();
    rmSync(binDir, { recursive: true, force: true });
  });

  test("leaves no half-made pod and surfaces the plugin's error", async () => {
        await assert.rejects(s.berthd.client.call('RunPodSandbox', { config: podConfig('refused'), runtime_handler: '' }), (e: unknown) => {
      assert.match((e as Error).message, /bt-refuse: no address for this pod/);
      assert.match((e as Error).message, /quota/);
      return true;
    });
    assert.deepEqual((await s.berthd.client.call('ListPodSandbox', {})).items, []);
    for (const kind of ['net', 'ipc', 'uts']) assert.deepEqual(readdirSync(join(s.nsDir, kind)), []);
    assert.deepEqual(ipFiles(FAIL_NET.name), []);
    assert.deepEqual(bridgePorts(FAIL_NET.bridge), [], 'no veth left on the bridge');
    assert.deepEqual(mountsUnder(join(s.berthd.state, 'sandboxes')), []);
    assert.deepEqual(readdirSync(join(s.berthd.state, 'sandboxes')), []);
    assert.deepEqual(readdirSync(join(s.cacheDir, 'attachments')), []);
  });
});
