// RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
// ListPodSandbox, StreamPodSandboxes, UpdatePodSandboxResources: call
// runtime/sandbox (which validates the request and looks the pod up by id or
// unique prefix) and shape the answer.
import { criServiceDefinitions } from '../cri-proto';
import type { PodSandbox } from '../cri-proto/generated/runtime/v1/PodSandbox';
import type { PodSandboxFilter__Output } from '../cri-proto/generated/runtime/v1/PodSandboxFilter';
import { nowUnixNanos } from '../runtime/common/clock';
import { unimplemented } from '../runtime/errors';
import type { PodSandboxes } from '../runtime/sandbox/pod-sandboxes';
import type { PodSandboxView } from '../runtime/sandbox/sandbox-types';
import type { ListedPodSandbox } from '../runtime/sandbox/sandbox-records';
import type { ShimServices } from './services';
import { AFTER_SERVING, type CriHandlers } from './handler';
import { ListEncoder, responseSerializer } from './list-encoding';
import { streamInChunks } from './stream-chunks';
import { podContainerStatuses, podSandboxStatusOf } from './status-builders';

/** Items per StreamPodSandboxes message: far below the default 16 MiB message limit even with large label maps. */
export const POD_SANDBOX_STREAM_CHUNK = 200;

export function podSandboxHandlers(ctx: Pick<ShimServices, 'containers' | 'images' | 'log' | 'sandboxes' | 'host'>): CriHandlers {
  const sandboxes: PodSandboxes = ctx.sandboxes;
  // Of a listed pod only its state changes after it is made.
  const listEncoder = new ListEncoder<ListedPodSandbox, PodSandbox>('items', responseSerializer(criServiceDefinitions().RuntimeService, 'ListPodSandbox'), {
    key: (s) => s.id,
    version: (s) => s.state,
    item: toListItem,
  });
  return {
    // A kubelet relists right after a restart: every pod's bytes are made while its first calls are answered.
    async [AFTER_SERVING]() {
      await listEncoder.prepare(sandboxes.listed());
    },

    async RunPodSandbox(request, call) {
      const id = await sandboxes.run(request.config, request.runtime_handler, call.delivered);
      return { pod_sandbox_id: id };
    },

    async StopPodSandbox(request) {
      await sandboxes.stop(request.pod_sandbox_id);
      return {};
    },

    async RemovePodSandbox(request) {
      await sandboxes.remove(request.pod_sandbox_id);
      return {};
    },

    async PodSandboxStatus(request) {
      const view = sandboxes.resolve(request.pod_sandbox_id);
      const info: Record<string, string> = {};
      if (request.verbose) info.info = JSON.stringify(verboseInfo(view, sandboxes));
      // Filled whatever verbose says, as containerd does: the kubelet's Evented PLEG reads them with the timestamp.
      return { status: podSandboxStatusOf(view), info, containers_statuses: podContainerStatuses(ctx, view.id), timestamp: nowUnixNanos() };
    },

    async ListPodSandbox(request) {
      const f = request.filter;
      return listEncoder.encode(filterSandboxes(sandboxes.listed(), f), !f || (!f.id && !f.state && Object.keys(f.label_selector ?? {}).length === 0));
    },

    async StreamPodSandboxes(request, sink) {
      const items = filterSandboxes(sandboxes.list(), request.filter).map(toListItem);
      await streamInChunks(items, sink, { size: POD_SANDBOX_STREAM_CHUNK, wrap: (chunk) => ({ pod_sandboxes: chunk }) });
    },

    async UpdatePodSandboxResources(request) {
      const applied = await sandboxes.updateResources(request.pod_sandbox_id, request.resources);
      if (applied.skipped.length > 0) ctx.log.debug({ pod: request.pod_sandbox_id, skipped: applied.skipped }, 'pod resources this host cannot take');
      return {};
    },

    // A pod checkpoint is its containers' checkpoints plus the pod's own state (pod.options, pod.dump) in one
    // archive, restored as a whole into a new pod: berth checkpoints and restores single containers only so far.
    async CheckpointPod() {
      throw unimplemented(`CheckpointPod: berth does not checkpoint pods; ${checkpointState(ctx)}`);
    },

    async RestorePod() {
      throw unimplemented(`RestorePod: berth does not restore pods; ${checkpointState(ctx)}`);
    },
  };
}

function checkpointState(ctx: Pick<ShimServices, 'host'>): string {
  const criu = ctx.host.checkpoint.criu;
  return criu.supported
    ? `containers are checkpointed one at a time (CheckpointContainer, criu ${criu.version}) and restored by a CreateContainer whose image is the archive`
    : `checkpointing is not available on this host: ${criu.reason}`;
}

/** The CRI's filter: id (full or prefix), state, and every label of the selector. */
export function filterSandboxes<S extends Pick<PodSandboxView, 'id' | 'state' | 'config'>>(all: S[], filter: PodSandboxFilter__Output | null | undefined): S[] {
  if (!filter) return all;
  return all.filter((s) => {
    if (filter.id && !s.id.startsWith(filter.id)) return false;
    if (filter.state && s.state !== filter.state.state) return false;
    for (const [k, v] of Object.entries(filter.label_selector ?? {})) if (s.config.labels[k] !== v) return false;
    return true;
  });
}

function toListItem(s: ListedPodSandbox): PodSandbox {
  return {
    id: s.id,
    metadata: s.config.metadata,
    state: s.state,
    created_at: s.createdAt,
    labels: s.config.labels,
    annotations: s.config.annotations,
    runtime_handler: s.runtimeHandler,
  };
}

function verboseInfo(s: PodSandboxView, sandboxes: PodSandboxes): object {
  return {
    id: s.id,
    runtimeHandler: s.runtimeHandler,
    config: s.config,
    namespaces: { network: s.netnsPath, ipc: s.ipcnsPath, uts: s.utsnsPath, pid: s.pidnsPath, user: s.userNamespace?.path ?? '' },
    ...(s.userNamespace ? { userNamespace: { uids: s.userNamespace.uids, gids: s.userNamespace.gids } } : {}),
    ...(s.pidNamespace ? { pidNamespace: { inode: s.pidNamespace.inode, holderPid: s.pidNamespace.holderPid } } : {}),
    cgroupParent: s.cgroupParent,
    files: { hosts: s.hostsPath, resolvConf: s.resolvConfPath, hostname: s.hostnamePath, shm: s.shmPath },
    hostname: s.hostname,
    cniResult: sandboxes.cniResult(s.id),
  };
}
