// Container RPCs: create, start, stop, remove, list/stream, status, update,
// reopen log, exec sync, checkpoint. Each validates its request, looks the
// container up by id or unique prefix, calls runtime/container/ and maps the
// answer; the model raises the errors the shim turns into gRPC codes.
import type { ContainerConfig__Output } from '../cri-proto/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig__Output } from '../cri-proto/generated/runtime/v1/PodSandboxConfig';
import type { ContainerState } from '../runtime/container/container-types';
import type { Containers, ContainerFilterOptions } from '../runtime/container/containers';
import { int64Field, ociResources } from '../runtime/container/oci-spec';
import { invalidArgument, isBerthError, notFound, unimplemented } from '../runtime/errors';
import type { ContainerImageSource } from '../runtime/image/image-types';
import type { ShimContext } from './context';
import type { CriHandlers } from './handler';
import { containerStatusOf, imageRefOf } from './status-builders';

/** What these handlers need from the context (the container model and the image store). */
export interface ContainerHandlerDeps {
  containers: Containers;
  images: ContainerImageSource;
  host: ShimContext['host'];
}

const STREAM_CHUNK = 500;
const CONTAINER_STATES: ContainerState[] = ['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED', 'CONTAINER_UNKNOWN'];

/** Everything CreateContainer refuses before anything exists on the host. */
export function validateCreateContainer(
  podSandboxId: string,
  config: ContainerConfig__Output | null,
  sandboxConfig: PodSandboxConfig__Output | null,
  host: ShimContext['host'],
): ContainerConfig__Output {
  if (!podSandboxId) throw invalidArgument('pod_sandbox_id: is empty');
  if (!config) throw invalidArgument('config: is missing');
  if (!sandboxConfig) throw invalidArgument('sandbox_config: is missing');
  if (!config.metadata) throw invalidArgument('config.metadata: is missing');
  if (!config.metadata.name) throw invalidArgument('config.metadata.name: is empty');
  if (!config.image) throw invalidArgument('config.image: is missing');
  if (!config.image.image) throw invalidArgument('config.image.image: is empty');
  const logDir = sandboxConfig.log_directory ?? '';
  if (logDir && !logDir.startsWith('/')) throw invalidArgument(`sandbox_config.log_directory: "${logDir}" must be absolute`);
  if (config.log_path) {
    if (config.log_path.startsWith('/')) throw invalidArgument(`config.log_path: "${config.log_path}" must be relative to the log directory`);
    if (config.log_path.split('/').includes('..')) throw invalidArgument(`config.log_path: "${config.log_path}" leaves the log directory`);
  }
  // Absent linux means the defaults (crictl and critest send none), as containerd takes it.
  const linux = config.linux ?? { resources: null, security_context: null };
  const sc = linux.security_context;
  if (sc?.run_as_user) int64Field(sc.run_as_user.value, 'config.linux.security_context.run_as_user', 0, 0xffffffff);
  if (sc?.run_as_group) int64Field(sc.run_as_group.value, 'config.linux.security_context.run_as_group', 0, 0xffffffff);
  (sc?.supplemental_groups ?? []).forEach((g, i) => int64Field(g, `config.linux.security_context.supplemental_groups[${i}]`, 0, 0xffffffff));
  if (sc?.run_as_group && !sc.run_as_user && !sc.run_as_username) {
    throw invalidArgument('config.linux.security_context.run_as_group: is set without run_as_user or run_as_username');
  }
  int64Field(linux.resources?.oom_score_adj, 'config.linux.resources.oom_score_adj', -1000, 1000);
  ociResources(linux.resources, host, 'config.linux.resources');
  (config.mounts ?? []).forEach((m, i) => {
    if (!m.container_path.startsWith('/')) throw invalidArgument(`config.mounts[${i}].container_path: "${m.container_path}" must be absolute`);
    if (!m.host_path) throw invalidArgument(`config.mounts[${i}].host_path: is empty`);
  });
  (config.devices ?? []).forEach((d, i) => {
    if (!d.host_path) throw invalidArgument(`config.devices[${i}].host_path: is empty`);
  });
  if (sc?.namespace_options?.pid === 'TARGET' && !sc.namespace_options.target_id) {
    throw invalidArgument('config.linux.security_context.namespace_options.target_id: is empty for pid mode TARGET');
  }
  return config;
}

function filterOf(filter: { id: string; state: { state: string } | null; pod_sandbox_id: string; label_selector: Record<string, string> } | null): ContainerFilterOptions {
  if (!filter) return {};
  const state = filter.state?.state as ContainerState | undefined;
  if (state && !CONTAINER_STATES.includes(state)) throw invalidArgument(`filter.state: unknown state "${state}"`);
  return { id: filter.id || undefined, state, podSandboxId: filter.pod_sandbox_id || undefined, labelSelector: filter.label_selector ?? {} };
}

export function containerHandlers(ctx: ShimContext): CriHandlers {
  const deps: ContainerHandlerDeps = { containers: ctx.containers, images: ctx.images, host: ctx.host };
  const { containers, images } = deps;

  const listed = (filter: ContainerFilterOptions) =>
    containers.filter(filter).map((c) => ({
      id: c.id,
      pod_sandbox_id: c.podSandboxId,
      metadata: c.config.metadata,
      image: { ...(c.config.image ?? {}), image: c.imageId || c.imageRef },
      image_ref: imageRefOf(images, c.imageId, c.imageRef),
      state: c.state,
      created_at: c.createdAt,
      labels: c.config.labels ?? {},
      annotations: c.config.annotations ?? {},
      image_id: c.imageId,
    }));

  return {
    async CreateContainer(request) {
      const config = validateCreateContainer(request.pod_sandbox_id, request.config, request.sandbox_config, deps.host);
      const id = await containers.create(request.pod_sandbox_id, config);
      return { container_id: id };
    },

    async StartContainer(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      await containers.start(request.container_id);
      return {};
    },

    async StopContainer(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      const timeout = int64Field(request.timeout, 'timeout', Number.MIN_SAFE_INTEGER);
      try {
        await containers.stop(request.container_id, Math.max(0, timeout));
      } catch (err) {
        // The CRI: stopping a container that is already gone succeeds (the kubelet retries stops).
        if (!isBerthError(err, 'NotFound')) throw err;
      }
      return {};
    },

    async RemoveContainer(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      await containers.remove(request.container_id);
      return {};
    },

    async ListContainers(request) {
      return { containers: listed(filterOf(request.filter)) };
    },

    async StreamContainers(request, sink) {
      const all = listed(filterOf(request.filter));
      for (let i = 0; i < all.length || i === 0; i += STREAM_CHUNK) {
        if (sink.cancelled()) return;
        await sink.write({ containers: all.slice(i, i + STREAM_CHUNK) });
        if (all.length === 0) break;
      }
    },

    async ContainerStatus(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      const c = containers.detail(request.container_id);
      const info: Record<string, string> = {};
      if (request.verbose) {
        info.info = JSON.stringify({
          sandboxID: c.podSandboxId,
          pid: c.pid,
          runtimeHandler: c.runtimeHandler,
          runtimeType: c.runtimePath,
          runtimeRoot: c.runtimeRoot,
          bundle: c.bundleDir,
          cgroupPath: c.cgroupPath,
          stopSignal: c.stopSignal,
          config: c.config,
          runtimeSpec: c.spec,
        });
      }
      return { status: containerStatusOf(c, images), info };
    },

    async UpdateContainerResources(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      if (!request.linux) throw invalidArgument('linux: is missing');
      ociResources(request.linux, deps.host, 'linux');
      await containers.updateResources(request.container_id, request.linux);
      return {};
    },

    async ReopenContainerLog(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      await containers.reopenLog(request.container_id);
      return {};
    },

    async ExecSync(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      if (!request.cmd || request.cmd.length === 0) throw invalidArgument('cmd: is empty');
      const timeout = int64Field(request.timeout, 'timeout', 0);
      const result = await containers.execSync(request.container_id, request.cmd, timeout);
      return { stdout: result.stdout, stderr: result.stderr, exit_code: result.exitCode };
    },

    async CheckpointContainer(request) {
      if (!request.container_id) throw invalidArgument('container_id: is empty');
      if (!containers.get(request.container_id)) throw notFound(`container ${request.container_id} not found`);
      throw unimplemented('CheckpointContainer: berth does not checkpoint containers (no CRIU support)');
    },
  };
}

