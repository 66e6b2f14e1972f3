// GetContainerEvents' handler over a real event bus, with a sink standing in for
// the gRPC stream: a client that never drains is ended with RESOURCE_EXHAUSTED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ContainerEventBus } from '../../runtime/events/container-event-bus';
import { isBerthError } from '../../runtime/errors';
import { containerEventsHandlers } from '../../shim/container-event-rpcs';
import type { ShimServices } from '../../shim/services';
import type { CallInfo, ResponseSink } from '../../shim/handler';
import type { ContainerView } from '../../runtime/container/container-types';
import type { PodSandboxView } from '../../runtime/sandbox/sandbox-types';

const pod = {
  id: 'pod1', state: 'SANDBOX_READY', createdAt: '1', runtimeHandler: 'runc', ips: ['10.0.0.2', 'fd00::2'],
  namespaceModes: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
  config: { metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 }, labels: { a: 'b' }, annotations: {}, linux: null },
} as unknown as PodSandboxView;
const container = {
  id: 'c1', podSandboxId: 'pod1', state: 'CONTAINER_RUNNING', createdAt: '2', startedAt: '3', finishedAt: '0', exitCode: 0,
  imageRef: 'busybox', imageId: 'sha256:abc', config: { metadata: { name: 'c', attempt: 0 }, image: { image: 'busybox' }, labels: {}, annotations: {}, mounts: [], log_path: 'c.log' },
} as unknown as ContainerView;

function fakeContext(bus: ContainerEventBus): ShimServices {
  return {
    events: bus,
    sandboxes: { get: (id: string) => (id === 'pod1' ? pod : undefined), list: () => [pod] },
    containers: {
      get: () => container,
      list: () => [container],
      detail: () => ({ ...container, reason: '', message: '', logPath: '/logs/c.log', spec: undefined, user: undefined, resources: null, stopSignal: 'SIGTERM' }),
    },
    images: { resolve: () => undefined },
  } as unknown as ShimServices;
}

const call: CallInfo = { id: 1, method: 'GetContainerEvents', cancelled: () => false, signal: new AbortController().signal, delivered: Promise.resolve(false) };

test('each event carries the pod status and its containers\' statuses', async () => {
  const bus = new ContainerEventBus();
  const written: unknown[] = [];
  let cancelled = false;
  const sink: ResponseSink<unknown> = { write: async (m) => void written.push(m), cancelled: () => cancelled };
  const handler = containerEventsHandlers(fakeContext(bus)).GetContainerEvents!;
  const running = handler({}, sink as never, { ...call, cancelled: () => cancelled });
  await new Promise((r) => setImmediate(r));
  bus.publish({ type: 'CONTAINER_STARTED_EVENT', containerId: 'c1', podSandboxId: 'pod1', createdAt: '42' });
  await new Promise((r) => setImmediate(r));
  bus.close();
  await assert.rejects(running, (err) => isBerthError(err, 'Unavailable'));
  assert.equal(written.length, 1);
  const event = written[0] as { container_id: string; container_event_type: string; created_at: string; pod_sandbox_status: { id: string; network: { ip: string; additional_ips: { ip: string }[] } }; containers_statuses: { id: string; state: string }[] };
  assert.equal(event.container_id, 'c1');
  assert.equal(event.container_event_type, 'CONTAINER_STARTED_EVENT');
  assert.equal(event.created_at, '42');
  assert.equal(event.pod_sandbox_status.id, 'pod1');
  assert.deepEqual(event.pod_sandbox_status.network, { ip: '10.0.0.2', additional_ips: [{ ip: 'fd00::2' }] });
  assert.deepEqual(event.containers_statuses.map((c) => [c.id, c.state]), [['c1', 'CONTAINER_RUNNING']]);
  cancelled = true;
});

test('a client that never drains is ended with RESOURCE_EXHAUSTED while publishing goes on', async () => {
  const bus = new ContainerEventBus({ queueLimit: 5 });
  const blocked: ResponseSink<unknown> = { write: () => new Promise<void>(() => undefined), cancelled: () => false };
  const handler = containerEventsHandlers(fakeContext(bus)).GetContainerEvents!;
  const running = handler({}, blocked as never, call);
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 20; i++) bus.publish({ type: 'CONTAINER_CREATED_EVENT', containerId: `c${i}`, podSandboxId: 'pod1', createdAt: String(i) });
  await assert.rejects(running, (err) => isBerthError(err, 'ResourceExhausted') && /fell too far behind/.test(err.message));
  assert.equal(bus.subscriberCount, 0);
});
