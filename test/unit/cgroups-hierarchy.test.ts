// Cgroup layout and path resolution (pure), and resource writes plus usage reads
// on a real cgroup this test creates under every hierarchy and removes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { cgroupLayoutFrom, detectCgroupLayout, expandSlice, relativeCgroupPath } from '../../runtime/cgroups/cgroup-layout';
import { detectCgroups } from '../../runtime/host/host-facts';
import { CgroupHierarchy, sharesToWeight } from '../../runtime/cgroups/cgroup-hierarchy';
import { readCpu, readMemory, readProcessCount, readSwap } from '../../runtime/cgroups/cgroup-usage';
import { isBerthError } from '../../runtime/errors';

const HYBRID_MOUNTS = [
  'tmpfs /sys/fs/cgroup tmpfs rw 0 0',
  'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0',
  'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0',
  'cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0',
  'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
].join('\n');

describe('cgroup paths', () => {
  test('a systemd slice expands into its nested parent slices', () => {
    assert.equal(expandSlice('kubepods.slice'), '/kubepods.slice');
    assert.equal(expandSlice('kubepods-burstable-pod12.slice'), '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice');
    assert.equal(expandSlice('-.slice'), '/');
    assert.throws(() => expandSlice('a--b.slice'));
    assert.throws(() => expandSlice('kubepods'));
  });

  test('cgroupfs paths, slice names and runc systemd triples resolve to hierarchy-relative paths', () => {
    assert.equal(relativeCgroupPath('/berth/pod1/c1'), '/berth/pod1/c1');
    assert.equal(relativeCgroupPath('berth/pod1'), '/berth/pod1');
    assert.equal(relativeCgroupPath('kubepods-besteffort.slice'), '/kubepods.slice/kubepods-besteffort.slice');
    assert.equal(relativeCgroupPath('kubepods-pod1.slice:cri-berth:abc'), '/kubepods.slice/kubepods-pod1.slice/cri-berth-abc.scope');
    assert.throws(() => relativeCgroupPath('/berth/../../etc'));
  });

  test('on a hybrid host v1 controllers resolve to their (co-)mounts and cgroup2-only controllers to the unified mount', () => {
    const layout = cgroupLayoutFrom(
      { mode: 'hybrid', unifiedMount: '/sys/fs/cgroup/unified', v1Controllers: ['cpu', 'cpuacct', 'memory'], v2Controllers: ['hugetlb'] },
      HYBRID_MOUNTS,
    );
    const h = new CgroupHierarchy(layout);
    assert.equal(h.dir('/p/c', 'cpuacct'), '/sys/fs/cgroup/cpu,cpuacct/p/c');
    assert.equal(h.dir('/p/c', 'memory'), '/sys/fs/cgroup/memory/p/c');
    assert.equal(h.dir('/p/c', 'hugetlb'), '/sys/fs/cgroup/unified/p/c');
    assert.equal(h.dir('/p/c', 'pids'), undefined);
    assert.deepEqual(h.allDirs('/p'), ['/sys/fs/cgroup/cpu,cpuacct/p', '/sys/fs/cgroup/memory/p', '/sys/fs/cgroup/unified/p']);
    assert.deepEqual(layout.namedMounts, ['/sys/fs/cgroup/systemd'], 'runc makes cgroups in name=systemd too: removal looks there');
  });

  test('the layout is built from the cgroup mounts host facts read for the mode, not from a second read of the mount table', () => {
    const layout = detectCgroupLayout('/sys/fs/cgroup', {
      mode: 'v1', unifiedMount: '', v1Controllers: ['memory'], v2Controllers: [],
      cgroupMountLines: 'cgroup /elsewhere/memory cgroup rw,nosuid,memory 0 0\ncgroup /elsewhere/systemd cgroup rw,name=systemd 0 0',
    });
    assert.deepEqual(layout.v1Mounts, { memory: '/elsewhere/memory' });
    assert.deepEqual(layout.namedMounts, ['/elsewhere/systemd']);
    // This host's own detection carries its cgroup mounts, and the layout from them is the one read afresh.
    const facts = detectCgroups();
    assert.deepEqual(detectCgroupLayout('/sys/fs/cgroup', facts), detectCgroupLayout('/sys/fs/cgroup', { ...facts, cgroupMountLines: undefined }));
  });

  test('a cgroup\'s process lists are its cgroup.procs in every hierarchy, the named one included; the root cgroup\'s are refused', () => {
    const layout = cgroupLayoutFrom(
      { mode: 'hybrid', unifiedMount: '/sys/fs/cgroup/unified', v1Controllers: ['cpu', 'cpuacct', 'memory'], v2Controllers: ['hugetlb'] },
      HYBRID_MOUNTS,
    );
    const h = new CgroupHierarchy(layout, 'systemd');
    assert.deepEqual(h.procsFiles('kubepods-pod1.slice:berth:abc'), [
      '/sys/fs/cgroup/cpu,cpuacct/kubepods.slice/kubepods-pod1.slice/berth-abc.scope/cgroup.procs',
      '/sys/fs/cgroup/memory/kubepods.slice/kubepods-pod1.slice/berth-abc.scope/cgroup.procs',
      '/sys/fs/cgroup/unified/kubepods.slice/kubepods-pod1.slice/berth-abc.scope/cgroup.procs',
      '/sys/fs/cgroup/systemd/kubepods.slice/kubepods-pod1.slice/berth-abc.scope/cgroup.procs',
    ]);
    assert.throws(() => h.procsFiles('/'), (err: unknown) => isBerthError(err) && /root cgroup/.test(err.message));
  });

  test('on a cgroup2 host every controller lives in the one hierarchy', () => {
    const h = new CgroupHierarchy(cgroupLayoutFrom({ mode: 'v2', unifiedMount: '/sys/fs/cgroup', v1Controllers: [], v2Controllers: ['cpu', 'memory', 'pids'] }, ''));
    assert.equal(h.dir('kubepods.slice', 'memory'), '/sys/fs/cgroup/kubepods.slice');
    assert.equal(h.isUnified('cpu'), true);
  });

  test('cpu shares map onto cgroup2 weights at both ends of the range', () => {
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(262144), 10000);
    assert.equal(sharesToWeight(1024), 39);
  });
});

describe('a real cgroup on this host', () => {
  const hierarchy = CgroupHierarchy.detect();
  const path = `/berth-test-${randomBytes(4).toString('hex')}`;
  const children: ChildProcess[] = [];

  before(() => hierarchy.ensure(path));
  after(() => {
    for (const child of children) {
      // A child killed by its test may be reaped before its exit event has run: ESRCH is "gone".
      if (child.exitCode === null && child.pid) child.kill('SIGKILL');
    }
    // Processes leave their cgroup only once reaped; retry the rmdir a bounded number of times.
    return (async () => {
      for (let attempt = 0; attempt < 50; attempt += 1) {
        try {
          hierarchy.remove(path);
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      hierarchy.remove(path);
    })();
  });

  /** Starts a child that joins the test cgroup before doing `work`, so its pages are charged there. */
  async function childInCgroup(work: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['-e', `process.stdin.once('data', () => { ${work} })`], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    await new Promise((r) => child.once('spawn', r));
    hierarchy.addProcess(path, child.pid!);
    const ready = new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    child.stdin!.write('go\n');
    await ready;
    return child;
  }

  test('resources are written to each controller in its own format', async () => {
    const applied = hierarchy.applyResources(path, {
      cpu_shares: '512',
      cpu_period: '100000',
      cpu_quota: '50000',
      cpuset_cpus: '0',
      memory_limit_in_bytes: String(256 * 1024 * 1024),
      memory_swap_limit_in_bytes: String(512 * 1024 * 1024),
    });
    assert.ok(applied.written.length >= 5, JSON.stringify(applied));
    if (hierarchy.isUnified('cpu')) {
      assert.equal(readFileSync(join(hierarchy.dir(path, 'cpu')!, 'cpu.max'), 'utf8').trim(), '50000 100000');
      assert.equal(readFileSync(join(hierarchy.dir(path, 'memory')!, 'memory.max'), 'utf8').trim(), String(256 * 1024 * 1024));
    } else {
      assert.equal(readFileSync(join(hierarchy.dir(path, 'cpu')!, 'cpu.shares'), 'utf8').trim(), '512');
      assert.equal(readFileSync(join(hierarchy.dir(path, 'cpu')!, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
      assert.equal(readFileSync(join(hierarchy.dir(path, 'memory')!, 'memory.limit_in_bytes'), 'utf8').trim(), String(256 * 1024 * 1024));
      const memsw = join(hierarchy.dir(path, 'memory')!, 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) assert.equal(readFileSync(memsw, 'utf8').trim(), String(512 * 1024 * 1024));
    }
    assert.equal(readFileSync(join(hierarchy.dir(path, 'cpuset')!, 'cpuset.cpus'), 'utf8').trim(), '0');
    assert.equal((await readMemory(hierarchy, path))?.limitBytes, 256 * 1024 * 1024);
  });

  test('raising memory above the current memory+swap limit succeeds (order of v1 writes)', async () => {
    hierarchy.applyResources(path, { memory_limit_in_bytes: String(768 * 1024 * 1024), memory_swap_limit_in_bytes: String(1024 * 1024 * 1024) });
    assert.equal((await readMemory(hierarchy, path))?.limitBytes, 768 * 1024 * 1024);
    hierarchy.applyResources(path, { cpu_quota: '-1', memory_limit_in_bytes: '-1', memory_swap_limit_in_bytes: '-1' });
    assert.equal((await readMemory(hierarchy, path))?.limitBytes, undefined);
  });

  test('a value the kernel rejects is an InvalidArgument naming the file', () => {
    assert.throws(() => hierarchy.applyResources(path, { cpuset_cpus: '999' }), (err) => isBerthError(err, 'InvalidArgument') && /cpuset\.cpus/.test(err.message));
    assert.throws(() => hierarchy.applyResources(path, { hugepage_limits: [{ page_size: '2 MB', limit: '0' }] }), (err) => isBerthError(err, 'InvalidArgument'));
  });

  test('a process burning CPU and holding memory shows in the cgroup usage', async () => {
    const before = await readCpu(hierarchy, path);
    assert.ok(before, 'cpu usage readable');
    await childInCgroup('const held = Buffer.alloc(48 * 1024 * 1024, 7); globalThis.held = held; process.stdout.write("held\\n"); setInterval(() => {}, 1000);');
    const burner = await childInCgroup('process.stdout.write("burning\\n"); const end = Date.now() + 30000; while (Date.now() < end) {}');
    // pids.current counts tasks (threads), as containerd and CRI-O report it: at least our two processes.
    assert.ok(((await readProcessCount(hierarchy, path)) ?? 0) >= 2);
    assert.deepEqual(hierarchy.processes(path).sort(), children.map((c) => c.pid!).sort());
    const memory = (await readMemory(hierarchy, path))!;
    assert.ok(memory.workingSetBytes >= 48 * 1024 * 1024, `working set ${memory.workingSetBytes}`);
    assert.ok(memory.usageBytes >= memory.workingSetBytes);
    assert.ok(memory.rssBytes >= 40 * 1024 * 1024, `rss ${memory.rssBytes}`);
    assert.ok(memory.pageFaults > 10000, `page faults ${memory.pageFaults}`);
    // Wait (bounded) until the burner has used 200ms of CPU in the cgroup.
    let after = (await readCpu(hierarchy, path))!;
    for (let i = 0; i < 100 && after.usageCoreNanoSeconds - before!.usageCoreNanoSeconds < 200_000_000n; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      after = (await readCpu(hierarchy, path))!;
    }
    assert.ok(after.usageCoreNanoSeconds - before!.usageCoreNanoSeconds >= 200_000_000n);
    process.kill(burner.pid!, 'SIGKILL');
    const swap = await readSwap(hierarchy, path);
    if (swap) assert.ok(swap.usageBytes >= 0);
  });
});

describe('resource writes on a cgroup2 layout', () => {
  // A directory tree shaped like a cgroup2 mount: the files a controller offers exist, so
  // the v2 formats (cpu.weight, cpu.max, memory.max, memory.swap.max) can be checked anywhere.
  const root = mkdtempSync('/tmp/berth-cg2-');
  const dir = join(root, 'kubepods.slice', 'kubepods-pod1.slice');
  after(() => rmSync(root, { recursive: true, force: true }));

  test('shares, quota, memory and swap land in the cgroup2 files in their cgroup2 formats', () => {
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    mkdirSync(dir, { recursive: true });
    for (const f of ['cpu.weight', 'cpu.max', 'memory.max', 'memory.swap.max', 'cgroup.controllers']) writeFileSync(join(dir, f), '');
    const h = new CgroupHierarchy(cgroupLayoutFrom({ mode: 'v2', unifiedMount: root, v1Controllers: [], v2Controllers: ['cpu', 'memory', 'pids'] }, ''), 'systemd');
    const applied = h.applyResources('kubepods-pod1.slice', {
      cpu_shares: '1024', cpu_quota: '20000', cpu_period: '100000', memory_limit_in_bytes: '1000', memory_swap_limit_in_bytes: '3000',
      unified: { 'memory.high': '900' },
    });
    const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
    assert.equal(read('cpu.weight'), '39');
    assert.equal(read('cpu.max'), '20000 100000');
    assert.equal(read('memory.max'), '1000');
    assert.equal(read('memory.swap.max'), '2000');
    assert.deepEqual(applied.skipped, ['memory.high=900 (not offered in ' + dir + ')']);
    assert.equal(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids');
    h.applyResources('kubepods-pod1.slice', { cpu_quota: '-1', memory_limit_in_bytes: '-1' });
    assert.equal(read('cpu.max'), 'max 100000');
    assert.equal(read('memory.max'), 'max');
  });
});
