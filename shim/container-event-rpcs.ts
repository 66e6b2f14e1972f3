// GetContainerEvents: a server stream of container lifecycle events, each with
// the pod's status and its containers' statuses as they are when the event is
// sent (what the kubelet's Evented PLEG caches). Every stream has its own
// bounded queue in the event bus; a stream that falls behind is ended with
// RESOURCE_EXHAUSTED so the kubelet re-subscribes and relists, and berth never waits on it.
import type { ContainerEventResponse } from '../cri-proto/generated/runtime/v1/ContainerEventResponse';
import { resourceExhausted, unavailable } from '../runtime/errors';
import type { ContainerLifecycleEvent } from '../runtime/events/event-types';
import type { ShimServices } from './services';
import type { CriHandlers } from './handler';
import { podContainerStatuses, podSandboxStatusOf } from './status-builders';

/** How often a waiting stream checks whether its client has gone. */
const CANCEL_POLL_MS = 1000;

export function containerEventResponse(ctx: Pick<ShimServices, 'containers' | 'events' | 'images' | 'sandboxes'>, event: ContainerLifecycleEvent): ContainerEventResponse {
  const pod = ctx.sandboxes.get(event.podSandboxId);
  return {
    container_id: event.containerId,
    container_event_type: event.type,
    created_at: event.createdAt,
    pod_sandbox_status: pod && pod.id === event.podSandboxId ? podSandboxStatusOf(pod) : null,
    containers_statuses: podContainerStatuses(ctx, event.podSandboxId),
  };
}

export function containerEventsHandlers(ctx: Pick<ShimServices, 'containers' | 'events' | 'images' | 'sandboxes'>): CriHandlers {
  return {
    async GetContainerEvents(_request, sink, call) {
      const subscription = ctx.events.subscribe();
      const watchClient = setInterval(() => {
        if (call.cancelled()) subscription.close();
      }, CANCEL_POLL_MS);
      try {
        for (;;) {
          const event = await subscription.next();
          if (!event) break;
          if (call.cancelled()) break;
          // A client that stops reading blocks write(); the bus cuts it off once its queue is full.
          await Promise.race([sink.write(containerEventResponse(ctx, event)), subscription.ended]);
          if (subscription.end !== 'open') break;
        }
      } finally {
        clearInterval(watchClient);
        subscription.close();
      }
      if (subscription.end === 'overflowed') {
        throw resourceExhausted('container events stream fell too far behind and was ended; subscribe again and relist');
      }
      if (subscription.end === 'bus-closed') throw unavailable('berthd is stopping');
    },
  };
}
