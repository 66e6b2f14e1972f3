// Stats and metrics through a real berthd: real runc containers burning CPU and
// holding memory in a CNI-networked pod, traffic between two pods this test
// makes, and the answers of the stats RPCs checked against what was done.
import { testNetwork } from '../support/test-network';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { inNetns, podConfig, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-stats-net', bridge: 'bt-stats0', subnet: '10.91.0.0/24' });
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const MiB = 1024 * 1024;

interface PodHandle {
  id: string;
  ip: string;
  netns: string;
}

describe('stats over CRI', () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let image = '';
  let podA: PodHandle;
  let podB: PodHandle;
  let burner = '';
  let holder = '';
  const logDir = mkdtempSync('/tmp/berth-stats-logs-');
  const sandboxConfigs = new Map<string, ReturnType<typeof podConfig>>();

  const runPod = async (name: string): Promise<PodHandle> => {
    const config = podConfig(name, { log_directory: logDir } as never);
    const id = (await s.berthd.client.call('RunPodSandbox', { config } as never)).pod_sandbox_id;
    sandboxConfigs.set(id, config);
    const st = await s.berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    return { id, ip: st.status!.network!.ip, netns: (JSON.parse(st.info.info) as { namespaces: { network: string } }).namespaces.network };
  };

  const runContainer = async (pod: PodHandle, name: string, script: string): Promise<string> => {
    const { container_id } = await s.berthd.client.call('CreateContainer', {
      pod_sandbox_id: pod.id,
      config: { metadata: { name, attempt: 0 }, image: { image }, command: ['sh', '-c', script], log_path: `${name}.log`, labels: { role: name }, linux: { resources: {}, security_context: {} } },
      sandbox_config: sandboxConfigs.get(pod.id),
    } as never);
    await s.berthd.client.call('StartContainer', { container_id });
    return container_id;
  };

  const containerStats = async (id: string) => (await s.berthd.client.call('ContainerStats', { container_id: id })).stats!;

  /** Polls (bounded) until `check` holds for the container's stats. */
  const waitStats = async (id: string, check: (st: Awaited<ReturnType<typeof containerStats>>) => boolean, what: string) => {
    let last;
    for (let i = 0; i < 200; i++) {
      last = await containerStats(id);
      if (check(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what} never held: ${JSON.stringify(last)}`);
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/stats:v1')).reference;
    s = await startSandboxBerthd(NET);
    await s.berthd.client.call('PullImage', { image: { image } } as never);
    podA = await runPod('stats-a');
    podB = await runPod('stats-b');
    burner = await runContainer(podA, 'burner', 'dd if=/dev/zero of=/layer-file bs=1024 count=2048 2>/dev/null; while :; do :; done');
    holder = await runContainer(podA, 'holder', 'x=$(head -c 33554432 /dev/zero | tr "\\000" a); echo held; while :; do sleep 3600; done');
  });

  after(async () => {
    await s?.cleanup();
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('a container holding 32 MiB shows it in its working set, RSS and usage', async () => {
    // "held" in its log: the string is built, the shell now only sleeps.
    const said = (): boolean => existsSync(join(logDir, 'holder.log')) && readFileSync(join(logDir, 'holder.log'), 'utf8').includes(' held');
    for (let i = 0; i < 300 && !said(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(said(), 'holder never said held');
    const st = await waitStats(holder, (x) => Number(x.memory?.working_set_bytes?.value ?? 0) >= 32 * MiB, 'holder working set >= 32 MiB');
    const ws = Number(st.memory!.working_set_bytes!.value);
    assert.ok(ws < 256 * MiB, `working set ${ws}`);
    assert.ok(Number(st.memory!.usage_bytes!.value) >= ws);
    assert.ok(Number(st.memory!.rss_bytes!.value) >= 30 * MiB);
    assert.ok(Number(st.memory!.page_faults!.value) > 0);
    assert.ok(st.memory!.major_page_faults !== null);
  });

  test('a container burning CPU shows near one core, and its writable layer holds what it wrote', async () => {
    await waitStats(burner, (st) => Number(st.writable_layer?.used_bytes?.value ?? 0) >= 2 * MiB, 'writable layer >= 2 MiB');
    const first = await containerStats(burner);
    await containerStats(holder);
    await new Promise((r) => setTimeout(r, 1000));
    const st = await containerStats(burner);
    const idle = await containerStats(holder);
    assert.equal(st.attributes!.id, burner);
    assert.equal(st.attributes!.metadata!.name, 'burner');
    assert.deepEqual(st.attributes!.labels, { role: 'burner' });
    // The machine is shared (2 cores): bound by what is physically possible, and check the
    // rate against the cumulative counter and against a sleeping container.
    const cores = Number(st.cpu!.usage_nano_cores!.value) / 1e9;
    assert.ok(cores > 0.02 && cores < 2.1, `burner uses ${cores} cores`);
    const counted = (Number(st.cpu!.usage_core_nano_seconds!.value) - Number(first.cpu!.usage_core_nano_seconds!.value)) / (Number(BigInt(st.cpu!.timestamp) - BigInt(first.cpu!.timestamp)));
    assert.ok(Math.abs(counted - cores) <= 0.25 * cores + 0.01, `rate ${cores} vs counter ${counted}`);
    assert.ok(Number(idle.cpu!.usage_nano_cores!.value) < Number(st.cpu!.usage_nano_cores!.value), 'a sleeping container uses less than a busy one');
    assert.ok(Number(st.cpu!.usage_core_nano_seconds!.value) > 0);
    assert.ok(Number(st.writable_layer!.inodes_used!.value) >= 1);
    assert.ok(st.writable_layer!.fs_id!.mountpoint.length > 0);
    assert.ok(BigInt(st.cpu!.timestamp) > 0n);
    // runc places containers in the cgroup2 hierarchy too on hybrid hosts: PSI comes from there.
    if (existsSync('/sys/fs/cgroup/unified/cgroup.procs') || existsSync('/sys/fs/cgroup/cgroup.procs')) {
      assert.ok(st.cpu!.psi?.Some, `cpu psi ${JSON.stringify(st.cpu!.psi)}`);
      assert.ok(Number(st.cpu!.psi!.Some!.Total) >= 0);
    }
  });

  test('pod stats cover its containers: CPU, memory, processes, per-container stats', async () => {
    const { stats } = await s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: podA.id.slice(0, 10) });
    assert.equal(stats!.attributes!.id, podA.id);
    const linux = stats!.linux!;
    assert.ok(Number(linux.memory!.working_set_bytes!.value) >= 32 * MiB);
    assert.ok(Number(linux.cpu!.usage_core_nano_seconds!.value) > 0);
    assert.ok(Number(linux.process!.process_count!.value) >= 2);
    assert.deepEqual(linux.containers.map((c) => c.attributes!.id).sort(), [burner, holder].sort());
    assert.ok(linux.network!.interfaces.some((i) => i.name === 'eth0'));
  });

  test('network bytes grow when one pod sends traffic to another', async () => {
    const before = (await s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: podB.id })).stats!.linux!.network!.default_interface!;
    const beforeA = (await s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: podA.id })).stats!.linux!.network!.default_interface!;
    assert.equal(before.name, 'eth0');
    inNetns(podA.netns, ['ping', '-c', '5', '-i', '0.2', '-s', '1000', '-W', '5', podB.ip]);
    const afterB = (await s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: podB.id })).stats!.linux!.network!.default_interface!;
    const afterA = (await s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: podA.id })).stats!.linux!.network!.default_interface!;
    assert.ok(Number(afterB.rx_bytes!.value) - Number(before.rx_bytes!.value) >= 5 * 1000, `B rx ${before.rx_bytes!.value} -> ${afterB.rx_bytes!.value}`);
    assert.ok(Number(afterA.tx_bytes!.value) - Number(beforeA.tx_bytes!.value) >= 5 * 1000, `A tx ${beforeA.tx_bytes!.value} -> ${afterA.tx_bytes!.value}`);
  });

  test('list and stream filters: by id prefix, by pod, by label', async () => {
    const all = (await s.berthd.client.call('ListContainerStats', {})).stats.map((x) => x.attributes!.id).sort();
    assert.deepEqual(all, [burner, holder].sort());
    const byPrefix = await s.berthd.client.call('ListContainerStats', { filter: { id: burner.slice(0, 8) } } as never);
    assert.deepEqual(byPrefix.stats.map((x) => x.attributes!.id), [burner]);
    const byLabel = await s.berthd.client.call('ListContainerStats', { filter: { label_selector: { role: 'holder' } } } as never);
    assert.deepEqual(byLabel.stats.map((x) => x.attributes!.id), [holder]);
    const byPod = await s.berthd.client.call('ListContainerStats', { filter: { pod_sandbox_id: podB.id } } as never);
    assert.deepEqual(byPod.stats, []);
    const streamed = await s.berthd.client.collect('StreamContainerStats', { filter: { pod_sandbox_id: podA.id } } as never);
    assert.deepEqual(streamed.flatMap((m) => m.container_stats).map((x) => x.attributes!.id).sort(), [burner, holder].sort());
    const pods = await s.berthd.client.call('ListPodSandboxStats', { filter: { label_selector: { pod: 'stats-b' } } } as never);
    assert.deepEqual(pods.stats.map((x) => x.attributes!.id), [podB.id]);
    const streamedPods = await s.berthd.client.collect('StreamPodSandboxStats', {} as never);
    assert.deepEqual(streamedPods.flatMap((m) => m.pod_sandbox_stats).map((x) => x.attributes!.id).sort(), [podA.id, podB.id].sort());
  });

  test('metric descriptors and pod metrics agree, in cAdvisor names', async () => {
    const { descriptors } = await s.berthd.client.call('ListMetricDescriptors', {});
    const byName = new Map(descriptors.map((d) => [d.name, d]));
    for (const name of ['container_cpu_usage_seconds_total', 'container_memory_working_set_bytes', 'container_network_receive_bytes_total']) assert.ok(byName.has(name), name);
    const { pod_metrics } = await s.berthd.client.call('ListPodSandboxMetrics', {});
    const a = pod_metrics.find((p) => p.pod_sandbox_id === podA.id)!;
    assert.ok(a.metrics.some((m) => m.name === 'container_network_receive_bytes_total' && m.label_values.includes('eth0')));
    const holderMetrics = a.container_metrics.find((c) => c.container_id === holder)!;
    const ws = holderMetrics.metrics.find((m) => m.name === 'container_memory_working_set_bytes')!;
    assert.ok(Number(ws.value!.value) >= 32 * MiB);
    for (const m of [...a.metrics, ...a.container_metrics.flatMap((c) => c.metrics)]) {
      assert.equal(m.label_values.length, byName.get(m.name)!.label_keys.length, m.name);
    }
    const streamed = await s.berthd.client.collect('StreamPodSandboxMetrics', {});
    assert.deepEqual(streamed.flatMap((m) => m.pod_sandbox_metrics).map((p) => p.pod_sandbox_id).sort(), [podA.id, podB.id].sort());
  });

  test('/metrics counts pods and containers by state', async () => {
    const line = s.berthd.logs().split('\n').find((l) => l.includes('metrics served at /metrics'));
    const port = (JSON.parse(line!) as { port: number }).port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, /berth_pod_sandboxes\{state="SANDBOX_READY"\} 2\n/);
    assert.match(text, /berth_containers\{state="CONTAINER_RUNNING"\} 2\n/);
    assert.match(text, /# TYPE berth_oci_runtime_call_duration_seconds histogram/);
    assert.match(text, /# TYPE berth_cni_call_duration_seconds histogram/);
  });

  test('unknown ids are NOT_FOUND and empty ids INVALID_ARGUMENT', async () => {
    await assert.rejects(s.berthd.client.call('ContainerStats', { container_id: 'f'.repeat(64) }), (e) => grpcCode(e) === NOT_FOUND);
    await assert.rejects(s.berthd.client.call('ContainerStats', { container_id: '' }), (e) => grpcCode(e) === INVALID_ARGUMENT);
    await assert.rejects(s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: 'f'.repeat(64) }), (e) => grpcCode(e) === NOT_FOUND);
    await assert.rejects(s.berthd.client.call('PodSandboxStats', { pod_sandbox_id: '' }), (e) => grpcCode(e) === INVALID_ARGUMENT);
  });
});
