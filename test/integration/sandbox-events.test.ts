// The pod sandbox's own lifecycle on GetContainerEvents, through a real
// berthd: created and started when RunPodSandbox completes, stopped at
// StopPodSandbox, deleted at RemovePodSandbox (what containerd sends and the
// kubelet's evented PLEG reads), and stopped when the pod's PID-namespace
// holder dies by itself.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ContainerEventResponse__Output } from '../../cri-proto/generated/runtime/v1/ContainerEventResponse';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { podConfig, processGone } from './sandbox-fixture';

const hostNetworkPod = (name: string, pid: 'POD' | 'CONTAINER') =>
  podConfig(name, { linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid, ipc: 'POD' } }, sysctls: {} } });

describe('pod sandbox events', () => {
  let berthd: BerthdProcess;
  let stream: ReturnType<BerthdProcess['client']['stream']>;
  const events: ContainerEventResponse__Output[] = [];

  const typesOf = (id: string): string[] => events.filter((e) => e.container_id === id).map((e) => e.container_event_type);
  async function waitFor(check: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(check(), `${what}; got ${JSON.stringify(events.map((e) => [e.container_id.slice(0, 8), e.container_event_type]))}`);
  }

  /** The host pid of the pod's PID-namespace holder, from verbose PodSandboxStatus. */
  async function holderOf(id: string): Promise<number> {
    const st = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const holder = (JSON.parse(st.info.info) as { pidNamespace?: { holderPid: number } }).pidNamespace?.holderPid ?? 0;
    assert.ok(holder > 0, `the pod has a PID holder: ${st.info.info}`);
    return holder;
  }

  /** Subscribes, and resolves once the stream is live: a throwaway pod's events have arrived on it. */
  async function subscribe(): Promise<void> {
    stream = berthd.client.stream('GetContainerEvents', {});
    stream.on('data', (e: ContainerEventResponse__Output) => events.push(e));
    stream.on('error', () => undefined);
    for (let attempt = 0; attempt < 40; attempt++) {
      const probe = (await berthd.client.call('RunPodSandbox', { config: hostNetworkPod(`probe${attempt}`, 'CONTAINER') })).pod_sandbox_id;
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: probe });
      for (let i = 0; i < 10 && typesOf(probe).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      if (typesOf(probe).length > 0) return;
    }
    throw new Error('GetContainerEvents never delivered a probe pod\'s events');
  }

  before(async () => {
    berthd = await startBerthd();
    await subscribe();
  });

  after(async () => {
    stream?.cancel();
    await berthd?.cleanup();
  });

  test('RunPodSandbox sends created and started for the pod, StopPodSandbox stopped, RemovePodSandbox deleted', async () => {
    const { pod_sandbox_id: id } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('evented', 'CONTAINER') });
    await waitFor(() => typesOf(id).length >= 2, 'created and started arrive');
    assert.deepEqual(typesOf(id), ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT']);
    for (const e of events.filter((x) => x.container_id === id)) {
      assert.equal(e.pod_sandbox_status?.id, id, 'the event carries the pod\'s status');
      assert.equal(e.pod_sandbox_status?.state, 'SANDBOX_READY');
      assert.equal(e.pod_sandbox_status?.metadata?.name, 'evented');
      assert.deepEqual(e.containers_statuses, [], 'a new pod has no containers');
      assert.ok(BigInt(e.created_at) > 0n);
    }

    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });
    await waitFor(() => typesOf(id).length >= 3, 'stopped arrives');
    const stopped = events.filter((e) => e.container_id === id)[2];
    assert.equal(stopped.container_event_type, 'CONTAINER_STOPPED_EVENT');
    assert.equal(stopped.pod_sandbox_status?.state, 'SANDBOX_NOTREADY');
    // A second stop of a stopped pod is no new transition.
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });

    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    await waitFor(() => typesOf(id).length >= 4, 'deleted arrives');
    assert.deepEqual(typesOf(id), ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']);
  });

  test('a pod whose PID namespace holder dies by itself is reported stopped and turns NOTREADY', async () => {
    const { pod_sandbox_id: id } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('holder', 'POD') });
    try {
      await waitFor(() => typesOf(id).length >= 2, 'created and started arrive');
      const holder = await holderOf(id);
      // The test made this pod, so its holder is the test's to end.
      process.kill(holder, 'SIGKILL');
      await waitFor(() => typesOf(id).includes('CONTAINER_STOPPED_EVENT'), 'stopped arrives once the holder is gone');
      assert.ok(processGone(holder));
      const after = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id });
      assert.equal(after.status?.state, 'SANDBOX_NOTREADY');
      const stopped = events.find((e) => e.container_id === id && e.container_event_type === 'CONTAINER_STOPPED_EVENT');
      assert.equal(stopped?.pod_sandbox_status?.state, 'SANDBOX_NOTREADY');

      // The kubelet's answer: stop (no second stopped event) and remove.
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
      await waitFor(() => typesOf(id).includes('CONTAINER_DELETED_EVENT'), 'deleted arrives');
      assert.deepEqual(typesOf(id), ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']);
    } finally {
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    }
  });

  test('after a berthd restart a pod\'s PID holder is watched again: its death is seen', async () => {
    const { pod_sandbox_id: id } = await berthd.client.call('RunPodSandbox', { config: hostNetworkPod('restart', 'POD') });
    try {
      await berthd.stop('SIGKILL');
      await berthd.start();
      await subscribe();
      assert.equal((await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id })).status?.state, 'SANDBOX_READY');
      const holder = await holderOf(id);
      process.kill(holder, 'SIGKILL');
      await waitFor(() => typesOf(id).includes('CONTAINER_STOPPED_EVENT'), 'stopped arrives after a restart too');
      assert.equal((await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id })).status?.state, 'SANDBOX_NOTREADY');
    } finally {
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    }
  });
});
