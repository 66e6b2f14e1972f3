// Stats from a real cgroup this test creates (a child burning CPU and holding
// memory), a real writable-layer directory, and a real network namespace.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import { parsePressure } from '../../runtime/cgroups/cgroup-usage';
import { StatsCollector } from '../../runtime/stats/stats-collector';
import { parseNetDev, defaultInterface } from '../../runtime/stats/net-dev';
import { measureDirectory } from '../../runtime/stats/writable-layer';
import { METRIC_DESCRIPTORS, containerMetricPoints, podMetricPoints } from '../../runtime/stats/metric-descriptors';
import type { ContainerView } from '../../runtime/container/container-types';
import type { PodSandboxView } from '../../runtime/sandbox/sandbox-types';

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456     789    1    2    0     0          0         0   654321     987    3    4    0     0       0          0
`;

test('/proc/net/dev parses into per-interface counters, eth0 the default', () => {
  const ifaces = parseNetDev(NET_DEV);
  assert.equal(ifaces.length, 2);
  const eth0 = defaultInterface(ifaces)!;
  assert.deepEqual(eth0, { name: 'eth0', rxBytes: 123456, rxPackets: 789, rxErrors: 1, rxDropped: 2, txBytes: 654321, txPackets: 987, txErrors: 3, txDropped: 4 });
});

test('cgroup2 pressure files parse into some/full lines', () => {
  const sample = parsePressure('some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n')!;
  assert.deepEqual(sample.some, { totalMicros: 123456, avg10: 1.5, avg60: 0.25, avg300: 0 });
  assert.equal(sample.full!.totalMicros, 7);
  assert.equal(parsePressure(''), undefined);
});

test('every metric descriptor is cAdvisor-named with id, name, image first', () => {
  const names = new Set(METRIC_DESCRIPTORS.map((d) => d.name));
  assert.equal(names.size, METRIC_DESCRIPTORS.length);
  for (const name of ['container_cpu_usage_seconds_total', 'container_memory_working_set_bytes', 'container_memory_usage_bytes', 'container_memory_rss', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total']) {
    assert.ok(names.has(name), name);
  }
  for (const d of METRIC_DESCRIPTORS) assert.deepEqual(d.labelKeys.slice(0, 3), ['id', 'name', 'image']);
});

test('a writable layer counts allocated bytes and each hard-linked inode once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-layer-'));
  try {
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'big'), Buffer.alloc(256 * 1024, 1));
    linkSync(join(dir, 'etc', 'big'), join(dir, 'big-link'));
    const usage = (await measureDirectory(dir))!;
    assert.equal(usage.inodesUsed, 3, 'root dir, etc, one file');
    assert.ok(usage.usedBytes >= 256 * 1024 && usage.usedBytes < 2 * 256 * 1024, String(usage.usedBytes));
    assert.equal(await measureDirectory(join(dir, 'missing')), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('stats collector on a real cgroup and network namespace', () => {
  const hierarchy = CgroupHierarchy.detect();
  const podPath = `/berth-test-${randomBytes(4).toString('hex')}`;
  const containerPath = `${podPath}/ctr`;
  const netnsName = `berth-stats-${randomBytes(3).toString('hex')}`;
  const upper = mkdtempSync(join(tmpdir(), 'berth-upper-'));
  const children: ChildProcess[] = [];
  const collector = new StatsCollector({ cgroups: hierarchy, layerMountpoint: '/var/lib/berth', upperDirs: () => [upper], reuseMs: 0, layerRefreshMs: 0 });

  const container = {
    id: 'c0ffee', podSandboxId: 'p0d', state: 'CONTAINER_RUNNING', cgroupPath: containerPath, upperDir: upper, pid: 0,
    config: { metadata: { name: 'burner', attempt: 0 }, image: { image: 'busybox' }, labels: {}, annotations: {} },
    imageRef: 'busybox', startedAt: String(BigInt(Date.now()) * 1_000_000n),
  } as unknown as ContainerView;
  const pod = {
    id: 'p0d', state: 'SANDBOX_READY', cgroupParent: podPath, netnsPath: `/var/run/netns/${netnsName}`,
    config: { metadata: { name: 'pod', uid: 'u', namespace: 'ns', attempt: 0 }, labels: {}, annotations: {} },
  } as unknown as PodSandboxView;

  before(() => {
    hierarchy.ensure(containerPath);
    writeFileSync(join(upper, 'file'), Buffer.alloc(64 * 1024, 1));
    execFileSync('ip', ['netns', 'add', netnsName]);
    execFileSync('ip', ['-n', netnsName, 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['netns', 'add', `${netnsName}-peer`]);
    execFileSync('ip', ['-n', netnsName, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', `${netnsName}-peer`]);
    execFileSync('ip', ['-n', netnsName, 'addr', 'add', '192.0.2.1/24', 'dev', 'eth0']);
    execFileSync('ip', ['-n', netnsName, 'link', 'set', 'eth0', 'up']);
    execFileSync('ip', ['-n', `${netnsName}-peer`, 'addr', 'add', '192.0.2.2/24', 'dev', 'peer0']);
    execFileSync('ip', ['-n', `${netnsName}-peer`, 'link', 'set', 'peer0', 'up']);
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
    for (const ns of [netnsName, `${netnsName}-peer`]) {
      try {
        execFileSync('ip', ['netns', 'del', ns]);
      } catch {
        // not created
      }
    }
    rmSync(upper, { recursive: true, force: true });
    // A cgroup is removed alone, never with its children: the container's first.
    const removeBoth = (): void => {
      hierarchy.remove(containerPath);
      hierarchy.remove(podPath);
    };
    for (let attempt = 0; attempt < 50; attempt += 1) {
      try {
        removeBoth();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    removeBoth();
  });

  test('CPU rate, memory working set, layer bytes and network counters of a busy container', async () => {
    const child = spawn(process.execPath, ['-e', `process.stdin.once('data', () => { globalThis.held = Buffer.alloc(32 * 1024 * 1024, 3); process.stdout.write('go\\n'); const end = Date.now() + 30000; while (Date.now() < end) {} })`], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    await new Promise((r) => child.once('spawn', r));
    hierarchy.addProcess(containerPath, child.pid!);
    const started = new Promise((r) => child.stdout!.once('data', r));
    child.stdin!.write('go\n');
    await started;

    await collector.layers.refresh();
    const first = await collector.containerUsage(container);
    assert.equal(first.cpu?.usageNanoCores, undefined, 'no rate before a second sample');
    await new Promise((r) => setTimeout(r, 500));
    const second = await collector.containerUsage(container);
    // One busy thread: close to one core; bounds leave room for a loaded 2-core machine.
    const cores = Number(second.cpu!.usageNanoCores!) / 1e9;
    assert.ok(cores > 0.2 && cores < 2.1, `cores ${cores}`);
    assert.ok(second.memory!.workingSetBytes >= 32 * 1024 * 1024, `ws ${second.memory!.workingSetBytes}`);
    assert.equal(second.memory!.availableBytes, undefined, 'unlimited: no available bytes');
    assert.ok(second.writableLayer!.usedBytes >= 64 * 1024);
    assert.equal(second.writableLayer!.inodesUsed, 2);
    // What only pod metrics report is read when asked for, not on every stats call.
    assert.equal(second.cpu!.userNanoSeconds, undefined);
    const detailed = await collector.containerUsage(container, true);
    assert.ok(detailed.cpu!.userNanoSeconds !== undefined && detailed.cpu!.systemNanoSeconds !== undefined, JSON.stringify(detailed.cpu, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    // The process also joined the cgroup2 hierarchy (hybrid or v2): its pressure is readable there.
    if (hierarchy.layout.unifiedMount) assert.ok(second.cpu!.pressure && second.memory!.pressure, 'PSI read from the cgroup2 side');

    hierarchy.applyResources(podPath, { memory_limit_in_bytes: String(512 * 1024 * 1024) });
    // Traffic between the pod's namespace and its peer namespace, both made by this test.
    const sender = `const s = require('dgram').createSocket('udp4'); let n = 0; const send = () => s.send(Buffer.alloc(1000), 9, '192.0.2.2', () => (++n < 10 ? send() : s.close())); send();`;
    execFileSync('ip', ['netns', 'exec', netnsName, process.execPath, '-e', sender], { timeout: 20000 });
    const podUsage = await collector.podUsage(pod, [container]);
    assert.ok(podUsage.memory!.workingSetBytes >= 32 * 1024 * 1024);
    assert.equal(podUsage.memory!.limitBytes, 512 * 1024 * 1024);
    assert.ok(podUsage.memory!.availableBytes! <= 512 * 1024 * 1024 - 32 * 1024 * 1024);
    assert.ok((podUsage.processes ?? 0) >= 1);
    assert.deepEqual(podUsage.network!.interfaces.map((i) => i.name), ['eth0']);
    assert.ok(podUsage.network!.defaultInterface!.txBytes >= 10 * 1000, JSON.stringify(podUsage.network));
    assert.ok(podUsage.network!.defaultInterface!.rxBytes > 0, 'the ARP reply came in');

    const points = [...podMetricPoints(pod, podUsage), ...containerMetricPoints(container, podUsage.containers[0])];
    const byName = new Map(METRIC_DESCRIPTORS.map((d) => [d.name, d]));
    for (const p of points) assert.equal(p.labelValues.length, byName.get(p.name)!.labelKeys.length, p.name);
    assert.ok(points.some((p) => p.name === 'container_network_transmit_bytes_total' && p.labelValues[3] === 'eth0' && p.value > 0n));
    assert.ok(points.some((p) => p.name === 'container_memory_working_set_bytes' && p.labelValues[0] === 'c0ffee'));
  });

  test('pod network counters come from the pod\'s own namespace, through a process in it or not, never from a process outside it', async () => {
    const probe = `bp${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['-n', netnsName, 'link', 'add', probe, 'type', 'veth', 'peer', 'name', `${probe}p`]);
    const inside = spawn('ip', ['netns', 'exec', netnsName, 'sleep', '60'], { stdio: 'ignore' });
    children.push(inside);
    await new Promise((r) => inside.once('spawn', r));
    const podNamespace = `net:[${statSync(pod.netnsPath).ino}]`;
    const namespaceOf = (pid: number): string => {
      try {
        return readlinkSync(`/proc/${pid}/ns/net`);
      } catch {
        return '';
      }
    };
    for (let i = 0; i < 100 && namespaceOf(inside.pid!) !== podNamespace; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(namespaceOf(inside.pid!), podNamespace, 'the sleeper joined the pod namespace');
    // This test's own process stands for a pid that was reused by a process on the host.
    for (const pid of [inside.pid!, process.pid, 0]) {
      const usage = await collector.podUsage(pod, [{ ...container, pid } as ContainerView]);
      const names = usage.network!.interfaces.map((i) => i.name);
      assert.ok(names.includes(probe) && names.includes('eth0'), `pid ${pid}: ${names.join(',')}`);
    }
  });
});
