// GetContainerEvents: a server stream of container lifecycle events, each with
// the pod's status and its containers' statuses as they are when the event is
// sent (what the kubelet's Evented PLEG caches). Every stream has its own
// bounded queue in the event bus; a stream that falls behind is ended with
// RESOURCE_EXHAUSTED so the kubelet re-subscribes and relists, and berth never waits on it.
import type { ContainerEventResponse } from '../cri-proto/generated/runtime/v1/ContainerEventResponse';
import type { ContainerStatus } from '../cri-proto/generated/runtime/v1/ContainerStatus';
import type { PodSandboxStatus } from '../cri-proto/generated/runtime/v1/PodSandboxStatus';
import type { ContainerView } from '../runtime/container/container-types';
import { resourceExhausted, unavailable } from '../runtime/errors';
import type { ContainerLifecycleEvent } from '../runtime/events/event-types';
import type { PodSandboxView } from '../runtime/sandbox/sandbox-types';
import type { ShimContext } from './context';
import type { CriHandlers } from './handler';

/** How often a waiting stream checks whether its client has gone. */
const CANCEL_POLL_MS = 1000;

export function podSandboxStatusOf(pod: PodSandboxView): PodSandboxStatus {
  const ns = pod.config.linux?.security_context?.namespace_options;
  return {
    id: pod.id,
    metadata: pod.config.metadata,
    state: pod.state,
    created_at: pod.createdAt,
    network: { ip: pod.ips[0] ?? '', additional_ips: pod.ips.slice(1).map((ip) => ({ ip })) },
    linux: {
      namespaces: {
        options: {
          network: pod.namespaceModes?.network ?? ns?.network ?? 'POD',
          pid: pod.namespaceModes?.pid ?? ns?.pid ?? 'CONTAINER',
          ipc: pod.namespaceModes?.ipc ?? ns?.ipc ?? 'POD',
          target_id: ns?.target_id ?? '',
          userns_options: ns?.userns_options ?? null,
        },
      },
    },
    labels: pod.config.labels ?? {},
    annotations: pod.config.annotations ?? {},
    runtime_handler: pod.runtimeHandler,
  };
}

export function containerStatusOf(container: ContainerView): ContainerStatus {
  return {
    id: container.id,
    metadata: container.config.metadata,
    state: container.state,
    created_at: container.createdAt,
    started_at: container.startedAt,
    finished_at: container.finishedAt,
    exit_code: container.exitCode,
    image: { ...(container.config.image ?? {}), image: container.imageRef },
    image_ref: container.imageId || container.imageRef,
    image_id: container.imageId,
    labels: container.config.labels ?? {},
    annotations: container.config.annotations ?? {},
    mounts: container.config.mounts ?? [],
    log_path: container.config.log_path ?? '',
    stop_signal: container.config.stop_signal,
  };
}

export function containerEventResponse(ctx: ShimContext, event: ContainerLifecycleEvent): ContainerEventResponse {
  const pod = ctx.sandboxes.get(event.podSandboxId);
  const containers = ctx.containers.list().filter((c) => c.podSandboxId === event.podSandboxId);
  return {
    container_id: event.containerId,
    container_event_type: event.type,
    created_at: event.createdAt,
    pod_sandbox_status: pod && pod.id === event.podSandboxId ? podSandboxStatusOf(pod) : null,
    containers_statuses: containers.map(containerStatusOf),
  };
}

export function containerEventsHandlers(ctx: ShimContext): CriHandlers {
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
