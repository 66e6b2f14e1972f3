// One ContainerStatus/PodSandboxStatus builder for ContainerStatus,
// PodSandboxStatus and GetContainerEvents: reasons, messages, full log paths
// and digested image refs reach every one of them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerDetail } from '../../runtime/container/container-view';
import { notFound } from '../../runtime/errors';
import type { ImageRecord } from '../../runtime/image/image-types';
import type { PodSandboxView } from '../../runtime/sandbox/sandbox-types';
import { containerEventResponse } from '../../shim/container-event-rpcs';
import type { ShimServices } from '../../shim/services';
import { podSandboxHandlers } from '../../shim/pod-sandbox-rpcs';
import { containerStatusOf, podContainerStatuses, type StatusSources } from '../../shim/status-builders';

const IMAGE_ID = 'sha256:' + 'ab'.repeat(32);
const DIGESTED = 'registry.test/busybox@sha256:' + 'cd'.repeat(32);

const pod = (id: string): PodSandboxView =>
  ({
    id, state: 'SANDBOX_READY', createdAt: '1', runtimeHandler: 'runc', ips: ['10.0.0.2'],
    namespaceModes: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
    config: { metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 }, labels: {}, annotations: {}, linux: null },
  }) as unknown as PodSandboxView;

const detail = (id: string, podSandboxId: string, over: Partial<ContainerDetail> = {}): ContainerDetail =>
  ({
    id, podSandboxId, state: 'CONTAINER_EXITED', createdAt: '2', startedAt: '3', finishedAt: '4', exitCode: 137,
    imageRef: 'registry.test/busybox:1', imageId: IMAGE_ID,
    config: { metadata: { name: id, attempt: 0 }, image: { image: 'registry.test/busybox:1' }, labels: { a: 'b' }, annotations: {}, mounts: [], log_path: `${id}.log`, stop_signal: 'SIGNAL_RUNTIME_DEFAULT' },
    reason: 'OOMKilled', message: 'the container exceeded its memory limit', logPath: `/var/log/pods/p/${id}.log`,
    spec: undefined, user: { uid: 1000, gid: 1000, additionalGids: [2000] }, resources: null, stopSignal: 'SIGTERM',
    ...over,
  }) as unknown as ContainerDetail;

const images: StatusSources['images'] = {
  resolve: (ref: string) => (ref === IMAGE_ID ? ({ id: IMAGE_ID, repoDigests: [DIGESTED] } as unknown as ImageRecord) : undefined),
};

function sources(details: ContainerDetail[], removed: string[] = []): StatusSources {
  return {
    containers: {
      list: () => details.map((d) => ({ id: d.id, podSandboxId: d.podSandboxId })),
      detail: (id: string) => {
        if (removed.includes(id)) throw notFound(`container ${id} not found`);
        const found = details.find((d) => d.id === id);
        if (!found) throw notFound(`container ${id} not found`);
        return found;
      },
    },
    images,
  };
}

test('a container status carries reason, message, the full log path, the user and a digested image ref', () => {
  const status = containerStatusOf(detail('c1', 'pod1'), images);
  assert.equal(status.reason, 'OOMKilled');
  assert.equal(status.message, 'the container exceeded its memory limit');
  assert.equal(status.log_path, '/var/log/pods/p/c1.log');
  assert.equal(status.image_ref, DIGESTED);
  assert.equal(status.image_id, IMAGE_ID);
  assert.deepEqual(status.user, { linux: { uid: '1000', gid: '1000', supplemental_groups: ['2000'] } });
  assert.equal(containerStatusOf(detail('c2', 'pod1', { imageId: '' }), images).image_ref, 'registry.test/busybox:1');
});

test("a pod's container statuses leave out other pods' containers and one removed meanwhile", () => {
  const all = [detail('c1', 'pod1'), detail('c2', 'pod2'), detail('c3', 'pod1')];
  assert.deepEqual(podContainerStatuses(sources(all, ['c3']), 'pod1').map((s) => s.id), ['c1']);
});

test('container events carry the same statuses as ContainerStatus, reason and image ref included', () => {
  const all = [detail('c1', 'pod1'), detail('c2', 'pod2')];
  const ctx = { ...sources(all), sandboxes: { get: (id: string) => (id === 'pod1' ? pod('pod1') : undefined) } } as unknown as ShimServices;
  const event = containerEventResponse(ctx, { type: 'CONTAINER_STOPPED_EVENT', containerId: 'c1', podSandboxId: 'pod1', createdAt: '9' });
  assert.equal(event.pod_sandbox_status?.id, 'pod1');
  assert.deepEqual(event.containers_statuses, [containerStatusOf(all[0], images)]);
});

test("PodSandboxStatus answers the pod's container statuses whether or not verbose is asked", async () => {
  const all = [detail('c1', 'pod1'), detail('c2', 'pod2')];
  const ctx = {
    ...sources(all),
    sandboxes: { resolve: (id: string) => pod(id), cniResult: () => null },
  } as unknown as ShimServices;
  const handler = podSandboxHandlers(ctx).PodSandboxStatus!;
  for (const verbose of [false, true]) {
    const response = (await handler({ pod_sandbox_id: 'pod1', verbose }, { id: 1, method: 'PodSandboxStatus', cancelled: () => false, signal: new AbortController().signal, delivered: Promise.resolve(true) })) as {
      containers_statuses: { id: string; reason: string; image_ref: string }[];
      timestamp: string;
    };
    assert.deepEqual(response.containers_statuses.map((s) => [s.id, s.reason, s.image_ref]), [['c1', 'OOMKilled', DIGESTED]]);
    assert.ok(BigInt(response.timestamp) > 0n);
  }
});
