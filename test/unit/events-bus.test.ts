import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ContainerEventBus } from '../../runtime/events/container-event-bus';
import type { ContainerEventType, ContainerLifecycleEvent } from '../../runtime/events/event-types';

function event(containerId: string, type: ContainerEventType = 'CONTAINER_CREATED_EVENT'): ContainerLifecycleEvent {
  return { type, containerId, podSandboxId: 'pod', createdAt: String(Date.now() * 1e6) };
}

describe('container event bus', () => {
  test('every subscriber receives every event, in publish order', async () => {
    const bus = new ContainerEventBus();
    const a = bus.subscribe();
    const b = bus.subscribe();
    const types: ContainerEventType[] = ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT'];
    for (const type of types) bus.publish(event('c1', type));
    for (const sub of [a, b]) {
      const seen: ContainerEventType[] = [];
      for (let i = 0; i < types.length; i += 1) seen.push((await sub.next())!.type);
      assert.deepEqual(seen, types);
    }
  });

  test('a waiting reader is woken by the next publish', async () => {
    const bus = new ContainerEventBus();
    const sub = bus.subscribe();
    const pending = sub.next();
    bus.publish(event('c2'));
    assert.equal((await pending)?.containerId, 'c2');
  });

  test('a subscriber that stops reading is cut off at its queue limit while others keep every event', async () => {
    const overflows: number[] = [];
    const bus = new ContainerEventBus({ queueLimit: 3, onOverflow: (id) => overflows.push(id) });
    const stalled = bus.subscribe();
    const reader = bus.subscribe();
    const received: string[] = [];
    const reading = (async () => {
      for await (const e of reader) {
        received.push(e.containerId);
        if (received.length === 10) return;
      }
    })();
    for (let i = 0; i < 10; i += 1) {
      bus.publish(event(`c${i}`));
      await new Promise((r) => setImmediate(r));
    }
    await reading;
    assert.equal(received.length, 10);
    assert.equal(stalled.end, 'overflowed');
    assert.equal(await stalled.ended, 'overflowed');
    assert.equal(await stalled.next(), undefined, 'queued events are dropped with the subscription');
    assert.deepEqual(overflows, [stalled.id]);
    assert.equal(bus.subscriberCount, 1);
  });

  test('publishing with no subscribers and after close is harmless', async () => {
    const bus = new ContainerEventBus();
    bus.publish(event('x'));
    const sub = bus.subscribe();
    bus.close();
    assert.equal(await sub.next(), undefined);
    assert.equal(sub.end, 'bus-closed');
    bus.publish(event('y'));
    assert.equal(bus.subscribe().end, 'bus-closed');
  });

  test('closing a subscription ends a pending read and detaches it', async () => {
    const bus = new ContainerEventBus();
    const sub = bus.subscribe();
    const pending = sub.next();
    sub.close();
    assert.equal(await pending, undefined);
    assert.equal(bus.subscriberCount, 0);
  });
});
