// ContainerStatus and PodSandboxStatus as berth answers them, built in one
// place: ContainerStatus and PodSandboxStatus (its containers_statuses) and
// the statuses each GetContainerEvents event carries are the same objects, so
// the kubelet's Evented PLEG caches what a status call would have said.
import type { ContainerStatus } from '../cri-proto/generated/runtime/v1/ContainerStatus';
import type { PodSandboxStatus } from '../cri-proto/generated/runtime/v1/PodSandboxStatus';
import type { ContainerDetail } from '../runtime/container/container-view';
import { isBerthError } from '../runtime/errors';
import type { ContainerImageSource } from '../runtime/image/image-types';
import type { PodSandboxView } from '../runtime/sandbox/sandbox-types';

/** Where the builders look things up. */
export interface StatusSources {
  containers: {
    list(): { id: string; podSandboxId: string }[];
    detail(idOrPrefix: string): ContainerDetail;
  };
  images: Pick<ContainerImageSource, 'resolve'>;
}

/** The image a container runs, as a digested reference when the image has one (what containerd answers). */
export function imageRefOf(images: StatusSources['images'], imageId: string, requested: string): string {
  const image = imageId ? images.resolve(imageId) : undefined;
  return image?.repoDigests[0] || imageId || requested;
}

export function containerStatusOf(c: ContainerDetail, images: StatusSources['images']): ContainerStatus {
  return {
    id: c.id,
    metadata: c.config.metadata,
    state: c.state,
    created_at: c.createdAt,
    started_at: c.startedAt,
    finished_at: c.finishedAt,
    exit_code: c.exitCode,
    image: { ...(c.config.image ?? {}), image: c.imageRef },
    image_ref: imageRefOf(images, c.imageId, c.imageRef),
    image_id: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: c.config.labels ?? {},
    annotations: c.config.annotations ?? {},
    mounts: c.config.mounts ?? [],
    log_path: c.logPath,
    resources: c.resources ? { linux: c.resources } : null,
    user: c.user ? { linux: { uid: String(c.user.uid), gid: String(c.user.gid), supplemental_groups: c.user.additionalGids.map(String) } } : null,
    stop_signal: c.config.stop_signal,
  };
}

/**
 * The statuses of a pod's containers, for PodSandboxStatus and container
 * events; one removed while they are gathered is left out.
 */
export function podContainerStatuses(sources: StatusSources, podSandboxId: string): ContainerStatus[] {
  const out: ContainerStatus[] = [];
  for (const view of sources.containers.list()) {
    if (view.podSandboxId !== podSandboxId) continue;
    try {
      out.push(containerStatusOf(sources.containers.detail(view.id), sources.images));
    } catch (err) {
      if (!isBerthError(err, 'NotFound')) throw err;
    }
  }
  return out;
}

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
          network: pod.namespaceModes.network,
          pid: pod.namespaceModes.pid,
          ipc: pod.namespaceModes.ipc,
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
