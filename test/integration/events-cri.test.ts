// GetContainerEvents through a real berthd: a full container lifecycle arrives
// in order on every stream with the pod's and containers' statuses, and a stream
// whose client stops reading holds up neither lifecycle calls nor other streams.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ContainerEventResponse__Output } from '../../cri-proto/generated/runtime/v1/ContainerEventResponse';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const LIFECYCLE = ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT'];

class EventTap {
  readonly events: ContainerEventResponse__Output[] = [];
  error: Error | undefined;
  ended = false;
  constructor(readonly stream: ReturnType<BerthdProcess['client']['stream']>) {
    stream.on('data', (e: ContainerEventResponse__Output) => this.events.push(e));
    stream.on('error', (e: Error) => {
      this.error = e;
    });
    stream.on('end', () => {
      this.ended = true;
    });
  }

  of(containerId: string): string[] {
    return this.events.filter((e) => e.container_id === containerId).map((e) => e.container_event_type);
  }

  async waitFor(check: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(check(), `${what}; got ${JSON.stringify(this.events.map((e) => [e.container_id.slice(0, 8), e.container_event_type]))}`);
  }
}

describe('container events over CRI', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  const logDir = mkdtempSync('/tmp/berth-events-logs-');
  const taps: EventTap[] = [];

  const lifecycle = async (name: string): Promise<string> => {
    const { container_id: id } = await berthd.client.call('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '600'], log_path: `${name}.log`, linux: { resources: {}, security_context: {} } },
      sandbox_config: sandboxConfig,
    } as never);
    await berthd.client.call('StartContainer', { container_id: id });
    await berthd.client.call('StopContainer', { container_id: id, timeout: '0' } as never);
    await berthd.client.call('RemoveContainer', { container_id: id });
    return id;
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/events:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } } as never);
    sandboxConfig = podConfig('events', {
      log_directory: logDir,
      // Every event carries the pod's status: a 48 KiB annotation makes a few dozen events
      // more than HTTP/2 windows and socket buffers hold, so a stream that stops reading really blocks its writer.
      annotations: { 'berth.test/ballast': 'x'.repeat(48 * 1024) },
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
  });

  after(async () => {
    for (const tap of taps) tap.stream.cancel();
    if (berthd) {
      try {
        await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
        await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
      } catch {
        // cleanup() below still stops berthd
      }
      await berthd.cleanup();
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('a full lifecycle arrives in order on two streams, with pod and container statuses', async () => {
    const a = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    const b = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    taps.push(a, b);
    const id = await lifecycle('one');
    for (const tap of [a, b]) {
      await tap.waitFor(() => tap.of(id).length >= 4, 'four events for the container');
      assert.deepEqual(tap.of(id), LIFECYCLE);
    }
    const events = a.events.filter((e) => e.container_id === id);
    for (const e of events) {
      assert.equal(e.pod_sandbox_status?.id, podId);
      assert.equal(e.pod_sandbox_status?.state, 'SANDBOX_READY');
      assert.ok(BigInt(e.created_at) > 0n);
    }
    const times = events.map((e) => BigInt(e.created_at));
    assert.deepEqual([...times].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)), times, 'created_at never goes back');
    assert.ok(!events[3].containers_statuses.some((c) => c.id === id), 'a deleted container is not among the pod\'s containers');
    assert.equal(a.error, undefined);
  });

  test('a stream whose client stopped reading delays neither lifecycle calls nor other streams', async () => {
    const stalled = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    stalled.stream.pause();
    const reader = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    taps.push(stalled, reader);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await lifecycle(`stall-${i}`));
    await reader.waitFor(() => ids.every((id) => reader.of(id).length === 4), 'every lifecycle seen by the reading stream');
    for (const id of ids) assert.deepEqual(reader.of(id), LIFECYCLE);
    // Once it reads again it gets what was queued for it, still in order (or is told it fell behind).
    stalled.stream.resume();
    await stalled.waitFor(() => ids.every((id) => stalled.of(id).length === 4) || stalled.error !== undefined, 'the stalled stream catches up or ends');
    if (!stalled.error) for (const id of ids) assert.deepEqual(stalled.of(id), LIFECYCLE);
    else assert.match(stalled.error.message, /fell too far behind/);
  });

  test('a cancelled stream is let go and the others keep working', async () => {
    const gone = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    const stays = new EventTap(berthd.client.stream('GetContainerEvents', {}));
    taps.push(stays);
    gone.stream.cancel();
    const id = await lifecycle('after-cancel');
    await stays.waitFor(() => stays.of(id).length === 4, 'events after another stream was cancelled');
    assert.deepEqual(stays.of(id), LIFECYCLE);
  });
});
