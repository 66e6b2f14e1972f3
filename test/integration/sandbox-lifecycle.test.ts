// Pod sandboxes through a real berthd: run, status, list, stop, remove, with
// real pinned namespaces and the real bridge network; nothing left behind.
import { addressIn, testNetwork } from '../support/test-network';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { grpcCode } from '../support/cri-client';
import { bridgePorts, iptablesLinesFor, mountsUnder, podConfig, processGone, sandboxBerthdForSuite } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-sbx-life', bridge: 'bt-sbx0', subnet: '10.86.1.0/24' });

interface VerboseInfo {
  namespaces: { network: string; ipc: string; uts: string; pid: string };
  pidNamespace: { inode: number; holderPid: number };
  files: { hosts: string; resolvConf: string; hostname: string; shm: string };
  cgroupParent: string;
}

describe('pod sandbox lifecycle', () => {
  const s = sandboxBerthdForSuite(NET);

  async function info(id: string): Promise<VerboseInfo> {
    const st = await s.berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    return JSON.parse(st.info.info) as VerboseInfo;
  }

  test('a pod gets its own network, IPC and UTS namespaces, an IP, and the files its containers mount', async () => {
    const c = s.berthd.client;
    const config = podConfig('web', {
      hostname: 'web-host',
      linux: {
        cgroup_parent: '',
        security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } },
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '80', 'kernel.shmmni': '2048' },
      },
    });
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    const st = await c.call('PodSandboxStatus', { pod_sandbox_id: id.slice(0, 12), verbose: true });
    assert.equal(st.status!.state, 'SANDBOX_READY');
    assert.equal(st.status!.metadata!.name, 'web');
    assert.match(st.status!.network!.ip, addressIn(NET));
    assert.equal(st.status!.linux!.namespaces!.options!.pid, 'POD');
    assert.equal(st.status!.runtime_handler, 'runc');
    assert.ok(BigInt(st.status!.created_at) > 0n);
    const v = JSON.parse(st.info.info) as VerboseInfo;
    for (const path of [v.namespaces.network, v.namespaces.ipc, v.namespaces.uts]) assert.ok(path.startsWith(s.nsDir), path);

    const inPod = (args: string[]): string =>
      execFileSync('nsenter', [`--net=${v.namespaces.network}`, `--uts=${v.namespaces.uts}`, `--ipc=${v.namespaces.ipc}`, ...args], { encoding: 'utf8' }).trim();
    assert.equal(inPod(['hostname']), 'web-host');
    assert.equal(inPod(['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start']), '80');
    assert.equal(inPod(['cat', '/proc/sys/kernel/shmmni']), '2048');
    assert.notEqual(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim(), '80', 'host sysctl untouched');
    assert.match(inPod(['ip', '-o', 'link', 'show', 'lo']), /UP/);

    assert.equal(readFileSync(v.files.hostname, 'utf8'), 'web-host\n');
    assert.equal(
      readFileSync(v.files.resolvConf, 'utf8'),
      'search berth-test.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n',
    );
    assert.match(readFileSync(v.files.hosts, 'utf8'), /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(readFileSync(v.files.hosts, 'utf8'), new RegExp(`^${st.status!.network!.ip.replace(/\./g, '\\.')}\\tweb-host$`, 'm'));
    const shm = mountsUnder(v.files.shm);
    assert.equal(shm.length, 1);
    assert.match(shm[0], / - tmpfs shm .*size=65536k/);

    // The PID namespace holder is PID 1 of a namespace of its own, pinned like the others.
    assert.equal(v.namespaces.pid, join(s.nsDir, 'pid', id));
    const holder = v.pidNamespace.holderPid;
    assert.match(readFileSync(`/proc/${holder}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m);

    await c.call('StopPodSandbox', { pod_sandbox_id: id });
    assert.equal((await c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false })).status!.state, 'SANDBOX_NOTREADY');
    assert.ok(processGone(holder), 'PID holder ended at stop');
    await c.call('StopPodSandbox', { pod_sandbox_id: id });
    await c.call('RemovePodSandbox', { pod_sandbox_id: id });
    for (const path of [v.namespaces.network, v.namespaces.ipc, v.namespaces.uts, v.namespaces.pid, v.files.hosts]) assert.equal(existsSync(path), false, path);
    assert.deepEqual(mountsUnder(v.files.shm), []);
    await assert.rejects(c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false }), (e: unknown) => grpcCode(e) === 5);
  });

  test('remove leaves nothing behind: namespace files, veths, host-local IPs, iptables rules, mounts, cgroups', async () => {
    const c = s.berthd.client;
        const rulesBefore = iptablesLinesFor(NET);
    const config = podConfig('leak', {
      port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: 18081, host_ip: '' }],
    });
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    const v = await info(id);
    assert.equal(bridgePorts(NET.bridge).length, 1, 'the pod has a veth on the bridge');
    assert.ok(iptablesLinesFor(NET).length > rulesBefore.length, 'portmap added rules while the pod runs');
    assert.equal(readdirSync(join('/var/lib/cni/networks', NET.name)).filter((f) => /^\d/.test(f)).length, 1);
    assert.ok(v.cgroupParent.startsWith('/berth/pod-'));
    assert.ok(existsSync(join('/sys/fs/cgroup/memory', v.cgroupParent)));
    await c.call('RemovePodSandbox', { pod_sandbox_id: id });

    assert.deepEqual(readdirSync(join(s.nsDir, 'net')), []);
    assert.deepEqual(readdirSync(join(s.nsDir, 'ipc')), []);
    assert.deepEqual(bridgePorts(NET.bridge), [], 'no veth left on the bridge');
    assert.deepEqual(readdirSync(join('/var/lib/cni/networks', NET.name)).filter((f) => /^\d/.test(f)), []);
    assert.deepEqual(iptablesLinesFor(NET), rulesBefore);
    assert.deepEqual(mountsUnder(join(s.berthd.state, 'sandboxes')), []);
    assert.equal(existsSync(join('/sys/fs/cgroup/memory', v.cgroupParent)), false);
    assert.deepEqual(readdirSync(join(s.cacheDir, 'attachments')), []);
  });

  test('RunPodSandbox calls with the same metadata in flight together share one sandbox; once it was delivered the name is reserved, ready or stopped', async () => {
    const c = s.berthd.client;
    const config = podConfig('retry');
    const [a, b] = await Promise.all([
      c.call('RunPodSandbox', { config, runtime_handler: '' }),
      c.call('RunPodSandbox', { config, runtime_handler: '' }),
    ]);
    assert.equal(a.pod_sandbox_id, b.pod_sandbox_id);
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }), (e: unknown) => grpcCode(e) === 6);
    await c.call('StopPodSandbox', { pod_sandbox_id: a.pod_sandbox_id });
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }), (e: unknown) => grpcCode(e) === 6);
    await c.call('RemovePodSandbox', { pod_sandbox_id: a.pod_sandbox_id });
    const fresh = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    assert.notEqual(fresh.pod_sandbox_id, a.pod_sandbox_id);
    await c.call('RemovePodSandbox', { pod_sandbox_id: fresh.pod_sandbox_id });
  });

  test('ListPodSandbox filters by id prefix, state and labels; StreamPodSandboxes gives the same pods', async () => {
    const c = s.berthd.client;
    const one = (await c.call('RunPodSandbox', { config: podConfig('list-a', { labels: { tier: 'front' } }), runtime_handler: '' })).pod_sandbox_id;
    const two = (await c.call('RunPodSandbox', { config: podConfig('list-b', { labels: { tier: 'back' } }), runtime_handler: '' })).pod_sandbox_id;
    await c.call('StopPodSandbox', { pod_sandbox_id: two });
    const ids = async (filter: object | null): Promise<string[]> =>
      (await c.call('ListPodSandbox', { filter: filter as never })).items.map((i) => i.id).sort();
    assert.deepEqual(await ids(null), [one, two].sort());
    assert.deepEqual(await ids({ id: one.slice(0, 10), label_selector: {} }), [one]);
    assert.deepEqual(await ids({ id: '', state: { state: 'SANDBOX_READY' }, label_selector: {} }), [one]);
    assert.deepEqual(await ids({ id: '', state: { state: 'SANDBOX_NOTREADY' }, label_selector: {} }), [two]);
    assert.deepEqual(await ids({ id: '', label_selector: { tier: 'back' } }), [two]);
    assert.deepEqual(await ids({ id: '', label_selector: { tier: 'nope' } }), []);
    const streamed = (await c.collect('StreamPodSandboxes', { filter: null })).flatMap((m) => m.pod_sandboxes.map((p) => p.id)).sort();
    assert.deepEqual(streamed, [one, two].sort());
    for (const id of [one, two]) await c.call('RemovePodSandbox', { pod_sandbox_id: id });
  });

  test('the CNI calls of a pod are timed in berth_cni_call_duration_seconds: one ADD at run, one DEL at stop', async () => {
    async function cniCalls(): Promise<Record<string, number>> {
      const line = s.berthd.logs().split('\n').filter((l) => l.includes('metrics served at /metrics')).pop();
      const port = (JSON.parse(line!) as { port: number }).port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const counts: Record<string, number> = {};
      for (const m of text.matchAll(/^berth_cni_call_duration_seconds_count\{operation="(\w+)",outcome="(\w+)"\} (\d+)$/gm)) counts[`${m[1]} ${m[2]}`] = Number(m[3]);
      return counts;
    }
    const c = s.berthd.client;
    const before = await cniCalls();
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config: podConfig('timed'), runtime_handler: '' });
    await c.call('StopPodSandbox', { pod_sandbox_id: id });
    await c.call('RemovePodSandbox', { pod_sandbox_id: id });
    const after = await cniCalls();
    const delta = (key: string): number => (after[key] ?? 0) - (before[key] ?? 0);
    assert.equal(delta('ADD ok'), 1);
    assert.equal(delta('DEL ok'), 1, 'remove after stop has nothing left to detach');
    assert.equal(delta('ADD error') + delta('DEL error'), 0);
  });

  test('stop and remove of unknown ids succeed; status of one is NOT_FOUND', async () => {
    const c = s.berthd.client;
    await c.call('StopPodSandbox', { pod_sandbox_id: 'f'.repeat(64) });
    await c.call('RemovePodSandbox', { pod_sandbox_id: 'f'.repeat(64) });
    await assert.rejects(c.call('PodSandboxStatus', { pod_sandbox_id: 'f'.repeat(64), verbose: false }), (e: unknown) => grpcCode(e) === 5);
    for (const method of ['StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'UpdatePodSandboxResources'] as const) {
      await assert.rejects(c.call(method, { pod_sandbox_id: '' } as never), (e: unknown) => {
        assert.equal(grpcCode(e), 3, method);
        assert.equal((e as { details: string }).details, 'pod_sandbox_id: is empty', method);
        return true;
      });
    }
    await assert.rejects(c.call('PodSandboxStatus', { pod_sandbox_id: 'f'.repeat(64), verbose: false }), (e: unknown) => {
      assert.equal((e as { details: string }).details, `pod sandbox "${'f'.repeat(64)}" not found`);
      return true;
    });
  });

  test('bad requests are INVALID_ARGUMENT naming the field, and create nothing', async () => {
    const c = s.berthd.client;
    const bad: [string, object | null, string?][] = [
      ['config', null],
      ['config.metadata', { ...podConfig('x'), metadata: null }],
      ['config.metadata.name', { ...podConfig('x'), metadata: { name: '', namespace: 'n', uid: 'u', attempt: 0 } }],
      ['config.metadata.uid', { ...podConfig('x'), metadata: { name: 'x', namespace: 'n', uid: '', attempt: 0 } }],
      ['config.log_directory', { ...podConfig('x'), log_directory: 'relative/logs' }],
      ['config.linux.sysctls', { ...podConfig('x'), linux: { sysctls: { 'net.ipv4.ip_forward': '1\nkernel.panic=1' } } }],
      ['config.linux.sysctls', { ...podConfig('x'), linux: { sysctls: { 'net.core.somaxconn': '1=2' } } }],
      ['config.linux.sysctls', { ...podConfig('x'), linux: { sysctls: { 'kernel.panic+net.ipv4.ip_forward': '1' } } }],
      ['config.linux.sysctls', { ...podConfig('x'), linux: { sysctls: { 'kernel.panic': '1' } } }],
      ['config.port_mappings[0].container_port', { ...podConfig('x'), port_mappings: [{ protocol: 'TCP', container_port: 0, host_port: 80, host_ip: '' }] }],
      ['config.port_mappings[0].host_ip', { ...podConfig('x'), port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: 80, host_ip: 'nope' }] }],
      ['runtime_handler', podConfig('x'), 'no-such-runtime'],
    ];
    for (const [field, config, handler] of bad) {
      await assert.rejects(
        c.call('RunPodSandbox', { config: config as never, runtime_handler: handler ?? '' }),
        (e: unknown) => {
          assert.equal(grpcCode(e), 3, `${field}: ${(e as Error).message}`);
          assert.ok((e as { details: string }).details.startsWith(field), `${(e as { details: string }).details} names ${field}`);
          return true;
        },
      );
    }
    assert.deepEqual((await c.call('ListPodSandbox', {})).items, []);
    assert.deepEqual(readdirSync(join(s.nsDir, 'net')), []);
  });

  test('pods survive a berthd restart', async () => {
    const c = s.berthd.client;
    const id = (await c.call('RunPodSandbox', { config: podConfig('survivor'), runtime_handler: '' })).pod_sandbox_id;
    const before = await c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false });
    await s.berthd.stop();
    await s.berthd.start();
    const after = await s.berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false });
    assert.equal(after.status!.state, 'SANDBOX_READY');
    assert.equal(after.status!.network!.ip, before.status!.network!.ip);
    await s.berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    assert.deepEqual(readdirSync(join(s.nsDir, 'net')), []);
  });
});
