// berthd with cgroup.driver = systemd against a real systemd (see
// test/support/systemd-container.ts): pod slices made through systemd when the
// kubelet's slice does not exist yet, pod resources set through
// SetUnitProperties, only berth's own slice (a pod given none) stopped at
// removal, a named one left (it may be shared); and a clear refusal to start
// when systemd cannot be reached. Pods use the host network (no CNI here).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import { expandSlice } from '../../runtime/cgroups/cgroup-layout';
import { SystemdManager } from '../../runtime/cgroups/systemd-manager';
import { BERTHD_ENTRY, BerthdProcess, startBerthd } from '../support/berthd-process';
import { bootSystemd, systemdUnavailableReason, type BootedSystemd } from '../support/systemd-container';
import { podConfig } from './sandbox-fixture';

function hostNetworkPod(name: string, cgroupParent: string): ReturnType<typeof podConfig> {
  return podConfig(name, {
    linux: { cgroup_parent: cgroupParent, security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
  });
}

test('berthd with the systemd driver refuses to start when systemd cannot be reached, and says how to fix it', async () => {
  const berthd = new BerthdProcess({ extraToml: '[cgroup]\ndriver = "systemd"\nsystemd_socket = "/nonexistent/berth-test/private"\n' });
  try {
    const r = spawnSync(process.execPath, [BERTHD_ENTRY, '--config', berthd.configPath], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1);
    const output = r.stdout + r.stderr;
    assert.match(output, /systemd's manager cannot be reached \(D-Bus \/nonexistent\/berth-test\/private: connect ENOENT/);
    assert.match(output, /cgroup\.driver = \\"cgroupfs\\"/);
  } finally {
    await berthd.cleanup();
  }
});

describe('berthd with cgroup.driver = systemd', { skip: systemdUnavailableReason() }, () => {
  let systemd: BootedSystemd;
  let berthd: BerthdProcess;
  let manager: SystemdManager;
  const hierarchy = CgroupHierarchy.detect('systemd');
  const memoryFile = hierarchy.isUnified('memory') ? 'memory.max' : 'memory.limit_in_bytes';
  const slice = `kubepods-burstable-pod${randomBytes(6).toString('hex')}.slice`;
  let podId = '';

  before(async () => {
    systemd = await bootSystemd();
    manager = await SystemdManager.connect({ socket: systemd.socket });
    berthd = await startBerthd({ extraToml: `[cgroup]\ndriver = "systemd"\nsystemd_socket = "${systemd.socket}"\n` });
  });
  after(async () => {
    await berthd?.cleanup();
    manager?.close();
    await systemd?.stop();
  });

  test('RunPodSandbox makes the pod slice systemd does not have yet', async () => {
    ({ pod_sandbox_id: podId } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('sd-pod', slice) }));
    assert.equal(await manager.controlGroup(slice), `/kubepods.slice/kubepods-burstable.slice/${slice}`);
    const status = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId });
    assert.equal(status.status?.state, 'SANDBOX_READY');
  });

  test('UpdatePodSandboxResources sets the slice limits through systemd', async () => {
    await berthd.client.call('UpdatePodSandboxResources', { pod_sandbox_id: podId, resources: { memory_limit_in_bytes: String(200 * 1024 * 1024), cpu_shares: '256' } });
    const dir = hierarchy.dir(join(systemd.cgroupRoot, expandSlice(slice)), 'memory')!;
    assert.equal(readFileSync(join(dir, memoryFile), 'utf8').trim(), String(200 * 1024 * 1024));
    assert.equal(await manager.unitProperty(slice, 'MemoryAccounting'), true);
  });

  test('RemovePodSandbox leaves a slice the caller named even when berth had to make it (other pods may share it); removing again succeeds', async () => {
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
    try {
      assert.notEqual(await manager.unitPath(slice), undefined, 'a named slice is never berth\'s to stop');
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
    } finally {
      await manager.stopUnit(slice);
    }
  });

  test('a pod given no cgroup parent gets berth\'s own slice, stopped at removal', async () => {
    const { pod_sandbox_id: id } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('sd-own', '') });
    const own = `berth-pod${id.slice(0, 16)}.slice`;
    assert.notEqual(await manager.unitPath(own), undefined, 'berth made the pod\'s own slice');
    const dir = hierarchy.dir(join(systemd.cgroupRoot, expandSlice(own)), 'memory')!;
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    assert.equal(await manager.unitPath(own), undefined);
    assert.ok(!existsSync(dir), 'the slice cgroup is gone');
  });

  test('a slice systemd already has (the kubelet made it) is used and left in place at removal', async () => {
    const kubeletSlice = `kubepods-besteffort-pod${randomBytes(6).toString('hex')}.slice`;
    await manager.startTransientUnit(kubeletSlice, []);
    try {
      const { pod_sandbox_id: id } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('sd-kubelet', kubeletSlice) });
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
      assert.notEqual(await manager.unitPath(kubeletSlice), undefined, 'not berth\'s to remove');
    } finally {
      await manager.stopUnit(kubeletSlice);
    }
  });
});
