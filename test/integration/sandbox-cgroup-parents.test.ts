// Cgroup parents through a real berthd: a parent the caller names is never
// berth's to remove (other pods share it; the kubelet owns its pod cgroups),
// and berth never descends into cgroups it did not create. Only the parent
// berth names for a pod given none is removed, with that pod.
import assert from 'node:assert/strict';
import { existsSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const PODS = 12;
const ROUNDS = 3;

/** A small seeded generator: the same interleavings on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('cgroup parents berth did not create for itself', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  const cgroups = CgroupHierarchy.detect();
  const sharedParent = `/berth-test-shared-${process.pid}`;
  /** The cgroup's directory in every hierarchy, name=systemd included (runc makes cgroups there too). */
  const everyDir = (path: string): string[] => [...cgroups.allDirs(path), ...cgroups.layout.namedMounts.map((root) => join(root, path))];
  const removeTestCgroup = (path: string): void => {
    for (const dir of everyDir(path)) {
      try {
        rmdirSync(dir);
      } catch {
        // not made in this hierarchy
      }
    }
  };

  const pod = (name: string, cgroupParent: string) =>
    podConfig(name, {
      linux: { cgroup_parent: cgroupParent, security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    });

  /** Runs a pod with one sleeping container; resolves with their ids and the container's cgroup dirs that exist. */
  async function up(name: string, cgroupParent: string): Promise<{ podId: string; containerDirs: string[] }> {
    const config = pod(name, cgroupParent);
    const { pod_sandbox_id: podId } = await berthd.client.call('RunPodSandbox', { config, runtime_handler: '' });
    const { container_id } = await berthd.client.call('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name: 'c', attempt: 0 }, image: { image }, command: ['sleep', '600'], linux: {} },
      sandbox_config: config,
    });
    await berthd.client.call('StartContainer', { container_id });
    const st = await berthd.client.call('ContainerStatus', { container_id, verbose: true });
    const cgroupPath = (JSON.parse(st.info.info) as { cgroupPath: string }).cgroupPath;
    const containerDirs = cgroups.allDirs(cgroupPath).filter((d) => existsSync(d));
    assert.ok(containerDirs.length > 0, `container ${container_id} has a cgroup (${cgroupPath})`);
    return { podId, containerDirs };
  }

  async function down(podId: string): Promise<void> {
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  }

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/cgparents:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } });
  });

  after(async () => {
    if (berthd) {
      try {
        const { items } = await berthd.client.call('ListPodSandbox', {});
        for (const item of items) await down(item.id).catch(() => undefined);
      } finally {
        await berthd.cleanup();
      }
    }
    await registry?.stop();
    // The test made (through berthd) the shared parent; berth leaves it, so the test removes it.
    removeTestCgroup(`${sharedParent}/foreign`);
    removeTestCgroup(sharedParent);
  });

  test('pods sharing one not-yet-existing cgroup parent come and go concurrently; none touches another pod\'s cgroups, the parent stays', async () => {
    assert.ok(!cgroups.allDirs(sharedParent).some((d) => existsSync(d)), `${sharedParent} must not exist before the test`);
    const random = seededRandom(12);
    const errors: string[] = [];
    /** Container cgroup dirs of pods that are up, by pod index: none may vanish while its pod is up. */
    const live = new Map<string, string[]>();
    const touched: string[] = [];

    for (let round = 0; round < ROUNDS; round++) {
      const delays = Array.from({ length: PODS }, () => [Math.floor(random() * 200), Math.floor(random() * 400)]);
      await Promise.all(
        delays.map(async ([beforeUp, beforeDown], i) => {
          const key = `r${round}p${i}`;
          try {
            await sleep(beforeUp);
            const { podId, containerDirs } = await up(`churn-${key}`, sharedParent);
            live.set(key, containerDirs);
            await sleep(beforeDown);
            live.delete(key);
            await down(podId);
            // Every other pod still up keeps every cgroup dir its container had.
            for (const [other, dirs] of live) {
              for (const dir of dirs) if (!existsSync(dir)) touched.push(`${key}'s removal took ${other}'s ${dir}`);
            }
          } catch (err) {
            errors.push(`${key}: ${(err as Error).message}`);
          }
        }),
      );
    }

    assert.deepEqual(errors, [], 'every run, create, start, stop and remove succeeds');
    assert.deepEqual(touched, [], 'no pod removal touches another pod\'s cgroups');
    assert.deepEqual((await berthd.client.call('ListPodSandbox', {})).items, [], 'no pod left listed');
    assert.deepEqual((await berthd.client.call('ListContainers', {})).containers, [], 'no container left listed');
    assert.ok(cgroups.allDirs(sharedParent).some((d) => existsSync(d)), 'the shared parent berth did not create for itself stays');
  });

  test('a cgroup parent that another process put a cgroup under is left alone, child and all', async () => {
    const parent = `${sharedParent}/foreign`;
    const { podId } = await up('foreign-child', parent);
    // Someone else's cgroup beside the pod's container (the kubelet's, another runtime's).
    const foreign = cgroups.allDirs(`${parent}/not-berths`);
    cgroups.ensure(`${parent}/not-berths`);
    try {
      await down(podId);
      for (const dir of foreign) assert.ok(existsSync(dir), `${dir} stays`);
      assert.ok(cgroups.allDirs(parent).some((d) => existsSync(d)), `${parent} stays`);
    } finally {
      removeTestCgroup(`${parent}/not-berths`);
      removeTestCgroup(parent);
    }
  });

  test('a pod given no cgroup parent gets berth\'s own, removed with the pod (only its own directory)', async () => {
    const { podId } = await up('own-parent', '');
    const st = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId, verbose: true });
    const own = (JSON.parse(st.info.info) as { cgroupParent: string }).cgroupParent;
    assert.equal(own, `/berth/pod-${podId.slice(0, 16)}`);
    const dirs = everyDir(own).filter((d) => existsSync(d));
    assert.ok(dirs.length > 0, 'berth made the pod\'s own parent');
    await down(podId);
    for (const dir of dirs) assert.ok(!existsSync(dir), `${dir} removed with the pod`);
    assert.ok(cgroups.allDirs('/berth').some((d) => existsSync(d)), '/berth itself stays');
  });
});
