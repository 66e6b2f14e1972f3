// The systemd cgroup driver against a real systemd (Debian's, PID 1 of a
// systemd-nspawn container, see test/support/systemd-container.ts): berth's own
// D-Bus client on systemd's private socket, pod slices in the kubelet's form,
// scopes adopting processes, live resource changes, stats read from where
// systemd put the cgroups, and removal.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import { readCpu, readMemory, readProcessCount } from '../../runtime/cgroups/cgroup-usage';
import { DbusError } from '../../runtime/cgroups/dbus-connection';
import { SystemdCgroups } from '../../runtime/cgroups/systemd-cgroups';
import { bootSystemd, systemdUnavailableReason, type BootedSystemd } from '../support/systemd-container';

const unavailable = systemdUnavailableReason();

function controllerFile(hierarchy: CgroupHierarchy, path: string, controller: 'memory' | 'cpu' | 'pids', file: string): string {
  const dir = hierarchy.dir(path, controller);
  assert.ok(dir, `no ${controller} hierarchy`);
  return readFileSync(join(dir, file), 'utf8').trim();
}

describe('systemd cgroup driver against a real systemd', { skip: unavailable }, () => {
  let systemd: BootedSystemd;
  let cgroups: SystemdCgroups;
  let hierarchy: CgroupHierarchy;
  const uid = randomBytes(6).toString('hex');
  const podSlice = `kubepods-burstable-pod${uid}.slice`;

  before(async () => {
    systemd = await bootSystemd();
    hierarchy = CgroupHierarchy.detect('systemd');
    cgroups = await SystemdCgroups.connect(hierarchy, { socket: systemd.socket, systemdRoot: systemd.cgroupRoot });
  });
  after(async () => {
    cgroups?.close();
    await systemd?.stop();
  });

  test('the client authenticates on the system bus and reads manager properties', async () => {
    const version = await cgroups.manager.managerProperty('Version');
    assert.match(String(version), /^\d+/);
    assert.match(String(await cgroups.manager.managerProperty('SystemState')), /^(running|degraded)$/);
  });

  test('a pod slice in the kubelet form is created under its parent slices with its limits', async () => {
    const created = await cgroups.ensureSlice(podSlice, { memory_limit_in_bytes: String(256 * 1024 * 1024), cpu_shares: '512', cpu_quota: '50000', cpu_period: '100000' }, 64);
    assert.equal(created.created, true);
    const path = await cgroups.cgroupPath(podSlice);
    assert.equal(path, join(systemd.cgroupRoot, `/kubepods.slice/kubepods-burstable.slice/${podSlice}`));
    assert.equal(controllerFile(hierarchy, path!, 'memory', hierarchy.isUnified('memory') ? 'memory.max' : 'memory.limit_in_bytes'), String(256 * 1024 * 1024));
    if (!hierarchy.isUnified('cpu')) {
      assert.equal(controllerFile(hierarchy, path!, 'cpu', 'cpu.shares'), '512');
      assert.equal(controllerFile(hierarchy, path!, 'cpu', 'cpu.cfs_quota_us'), '50000');
    }
    assert.equal(controllerFile(hierarchy, path!, 'pids', 'pids.max'), '64');
  });

  test('ensuring an existing slice again sets the new limits and does not fail', async () => {
    const again = await cgroups.ensureSlice(podSlice, { memory_limit_in_bytes: String(128 * 1024 * 1024) });
    assert.equal(again.created, false);
    const path = (await cgroups.cgroupPath(podSlice))!;
    assert.equal(controllerFile(hierarchy, path, 'memory', hierarchy.isUnified('memory') ? 'memory.max' : 'memory.limit_in_bytes'), String(128 * 1024 * 1024));
  });

  test('a scope adopts a running process, delegated, and its stats are read where systemd put it', async () => {
    // Keeps forking children that fill a pipe: CPU time and memory charged inside the scope
    // (v1 does not move a process's earlier charges with it).
    const proc = systemd.startProcess(['sh', '-c', "while :; do x=$(head -c 2000000 /dev/zero | tr '\\0' a); done"]);
    const scope = `berth-test-${uid}.scope`;
    try {
      await cgroups.startScope(scope, podSlice, [proc.pid], { delegate: true });
      const path = (await cgroups.cgroupPath(scope))!;
      assert.equal(path, join(systemd.cgroupRoot, `/kubepods.slice/kubepods-burstable.slice/${podSlice}/${scope}`));
      assert.equal(await cgroups.manager.unitProperty(scope, 'Delegate'), true);
      // The process really moved: the kernel says so for the memory controller.
      const memoryLine = readFileSync(`/proc/${proc.hostPid}/cgroup`, 'utf8').split('\n').find((l) => /:memory:/.test(l) || l.startsWith('0::'));
      assert.ok(memoryLine?.endsWith(`${podSlice}/${scope}`), memoryLine);
      assert.ok((await readProcessCount(hierarchy, path) ?? 0) >= 1);
      let memory = await readMemory(hierarchy, path);
      for (let i = 0; i < 100 && !(memory && memory.usageBytes > 0); i++) {
        await new Promise((r) => setTimeout(r, 20));
        memory = await readMemory(hierarchy, path);
      }
      assert.ok(memory && memory.usageBytes > 0, 'memory usage is read from the scope');
      // The busy loop accumulates CPU time in the scope and in the pod slice above it.
      let cpu = await readCpu(hierarchy, path);
      for (let i = 0; i < 100 && !(cpu && cpu.usageCoreNanoSeconds > 0n); i++) {
        await new Promise((r) => setTimeout(r, 20));
        cpu = await readCpu(hierarchy, path);
      }
      assert.ok(cpu && cpu.usageCoreNanoSeconds > 0n, 'cpu usage is read from the scope');
      const podCpu = await readCpu(hierarchy, (await cgroups.cgroupPath(podSlice))!);
      assert.ok(podCpu && podCpu.usageCoreNanoSeconds >= cpu.usageCoreNanoSeconds, 'the pod slice accounts for its scopes');
    } finally {
      await cgroups.remove(scope);
      proc.kill();
    }
  });

  test('resources change live through SetUnitProperties', async () => {
    await cgroups.applyResources(podSlice, { memory_limit_in_bytes: String(96 * 1024 * 1024), cpu_shares: '1024' }, 32);
    const path = (await cgroups.cgroupPath(podSlice))!;
    assert.equal(controllerFile(hierarchy, path, 'memory', hierarchy.isUnified('memory') ? 'memory.max' : 'memory.limit_in_bytes'), String(96 * 1024 * 1024));
    assert.equal(controllerFile(hierarchy, path, 'pids', 'pids.max'), '32');
    if (!hierarchy.isUnified('cpu')) assert.equal(controllerFile(hierarchy, path, 'cpu', 'cpu.shares'), '1024');
  });

  test('a scope name that already exists is refused by systemd, not replaced', async () => {
    const proc = systemd.startProcess(['sleep', '1000']);
    const scope = `berth-dup-${uid}.scope`;
    try {
      await cgroups.startScope(scope, podSlice, [proc.pid]);
      await assert.rejects(cgroups.startScope(scope, podSlice, [proc.pid]), (err: unknown) => err instanceof DbusError && err.dbusName === 'org.freedesktop.systemd1.UnitExists');
    } finally {
      await cgroups.remove(scope);
      proc.kill();
    }
  });

  test('stopping a scope kills its processes and removes its cgroup', async () => {
    const proc = systemd.startProcess(['sleep', '1000']);
    const scope = `berth-stop-${uid}.scope`;
    await cgroups.startScope(scope, podSlice, [proc.pid]);
    const path = (await cgroups.cgroupPath(scope))!;
    await cgroups.remove(scope);
    assert.equal(await cgroups.cgroupPath(scope), undefined);
    assert.ok(!existsSync(hierarchy.dir(path, 'memory')!), 'the scope cgroup is gone');
    for (let i = 0; i < 100 && existsSync(`/proc/${proc.hostPid}`) && !/State:\s+Z/.test(readFileSync(`/proc/${proc.hostPid}/status`, 'utf8')); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const status = existsSync(`/proc/${proc.hostPid}/status`) ? readFileSync(`/proc/${proc.hostPid}/status`, 'utf8') : '';
    assert.ok(status === '' || /State:\s+Z/.test(status), 'the process was killed');
    proc.kill();
  });

  test('removing the pod slice removes its cgroup; removing it again succeeds', async () => {
    const path = (await cgroups.cgroupPath(podSlice))!;
    await cgroups.remove(podSlice);
    assert.ok(!existsSync(hierarchy.dir(path, 'memory')!));
    await cgroups.remove(podSlice);
  });

  test('a bad slice name is refused before systemd is asked', async () => {
    await assert.rejects(cgroups.ensureSlice('kubepods/x.slice'), /not a systemd slice name/);
    await assert.rejects(cgroups.ensureSlice('kubepods--x.slice'), /not a valid slice name/);
  });
});
