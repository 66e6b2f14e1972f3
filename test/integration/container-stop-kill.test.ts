// StopContainer's SIGKILL over CRI (cgroupfs driver), for each PID namespace a
// container can have: with its own, SIGKILL to its init ends the namespace and
// every process in it; in the pod's or the host's, every process of the
// container is signalled (runc kill --all, then berth's own pass over the
// container's cgroup), since its init's death ends nothing else. Each container ignores SIGTERM and leaves a child that ignores it too.
// The same stop under the systemd driver is in systemd-containers.test.ts.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { hostPidsRunning, podConfig, startContainerInPod } from './sandbox-fixture';

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('StopContainer kills a container that ignores SIGTERM, whatever its PID namespace', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  const leftovers: number[] = [];

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/stopkill:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } });
  });
  after(async () => {
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await berthd?.cleanup();
    await registry?.stop();
  });

  for (const pid of ['CONTAINER', 'POD', 'NODE'] as const) {
    test(`PID namespace ${pid}: the init and its child are killed once the grace period passes`, async () => {
      // The kubelet gives the container the pod's namespace options; the container's are the ones runc gets.
      const namespaceOptions = { network: 'NODE', pid, ipc: 'POD' } as const;
      const sandboxConfig = podConfig(`stopkill-${pid.toLowerCase()}`, {
        linux: { cgroup_parent: '', security_context: { namespace_options: namespaceOptions }, sysctls: {} },
      });
      const { pod_sandbox_id: podId } = await berthd.client.call('RunPodSandbox', { config: sandboxConfig });
      // A number no other process on the host sleeps for: the child is found by its command line.
      const child = ['sleep', String(900_000_000 + randomInt(99_999_999))];
      const id = await startContainerInPod(berthd, {
        podId, sandboxConfig, image, name: 'stubborn',
        command: ['sh', '-c', `trap "" TERM; ${child.join(' ')} & while :; do sleep 1; done`],
        extra: { linux: { security_context: { namespace_options: namespaceOptions } } },
      });
      const childPids = await until(() => {
        const found = hostPidsRunning(child);
        return found.length ? found : undefined;
      }, 'the container\'s child to start');
      leftovers.push(...childPids);

      await berthd.client.call('StopContainer', { container_id: id, timeout: '1' });
      const { status } = await berthd.client.call('ContainerStatus', { container_id: id });
      assert.equal(status?.state, 'CONTAINER_EXITED');
      assert.equal(status?.exit_code, 137, 'the init died of SIGKILL');
      await until(() => (hostPidsRunning(child).length === 0 ? true : undefined), `the child ${child.join(' ')} to be killed too`, 10_000);

      await berthd.client.call('RemoveContainer', { container_id: id });
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
    });
  }
});
