// Container RPCs: create, start, stop, remove, list/stream, status, update,
// reopen log, exec sync, checkpoint. Each hands its request to the container
// model (runtime/container/containers.ts), which validates it, looks the
// container up by id or unique prefix and raises the errors the shim turns
// into gRPC codes; the handlers map the answers.
import { criServiceDefinitions } from '../cri-proto';
import type { ContainerState, ContainerView } from '../runtime/container/container-types';
import type { ContainerFilterOptions, ListedContainer } from '../runtime/container/container-view';
import { requestTimeoutSeconds } from '../runtime/common/request-timeout';
import { invalidArgument, isBerthError } from '../runtime/errors';
import type { ShimServices } from './services';
import { AFTER_SERVING, type CriHandlers } from './handler';
import { ListEncoder, responseSerializer } from './list-encoding';
import { streamInChunks } from './stream-chunks';
import { containerStatusOf, imageRefOf } from './status-builders';

const STREAM_CHUNK = 500;
const CONTAINER_STATES: ContainerState[] = ['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED', 'CONTAINER_UNKNOWN'];

function filterOf(filter: { id: string; state: { state: string } | null; pod_sandbox_id: string; label_selector: Record<string, string> } | null): ContainerFilterOptions {
  if (!filter) return {};
  const state = filter.state?.state as ContainerState | undefined;
  if (state && !CONTAINER_STATES.includes(state)) throw invalidArgument(`filter.state: unknown state "${state}"`);
  return { id: filter.id || undefined, state, podSandboxId: filter.pod_sandbox_id || undefined, labelSelector: filter.label_selector ?? {} };
}

export function containerHandlers(ctx: Pick<ShimServices, 'containers' | 'images'>): CriHandlers {
  const { containers, images } = ctx;

  /** Containers share a few images: each is looked up in the store once per list (by id, then name: no key string is built). */
  const imageRefs = (): ((c: Pick<ContainerView, 'imageId' | 'imageRef'>) => string) => {
    const refs = new Map<string, Map<string, string>>();
    return (c) => {
      let byRef = refs.get(c.imageId);
      if (!byRef) refs.set(c.imageId, (byRef = new Map()));
      let ref = byRef.get(c.imageRef);
      if (ref === undefined) byRef.set(c.imageRef, (ref = imageRefOf(images, c.imageId, c.imageRef)));
      return ref;
    };
  };
  const listItem = (c: ListedContainer, imageRef: string) => ({
    id: c.id,
    pod_sandbox_id: c.podSandboxId,
    metadata: c.config.metadata,
    image: { ...(c.config.image ?? {}), image: c.imageId || c.imageRef },
    image_ref: imageRef,
    state: c.state,
    created_at: c.createdAt,
    labels: c.config.labels ?? {},
    annotations: c.config.annotations ?? {},
    image_id: c.imageId,
  });
  const listed = (filter: ContainerFilterOptions) => {
    const refOf = imageRefs();
    return containers.filter(filter).map((c) => listItem(c, refOf(c)));
  };
  // Of a listed container only its state and its image's name change after it is made. Image names
  // are looked up again only once the image store changed (images.generation).
  let refOfThisList = imageRefs();
  let refsGeneration = images.generation;
  const refreshImageRefs = (): void => {
    if (refsGeneration !== images.generation) {
      refsGeneration = images.generation;
      refOfThisList = imageRefs();
    }
  };
  const listEncoder = new ListEncoder<ListedContainer, ReturnType<typeof listItem>>('containers', responseSerializer(criServiceDefinitions().RuntimeService, 'ListContainers'), {
    key: (c) => c.id,
    version: (c) => c.state,
    detail: (c) => refOfThisList(c),
    item: (c) => listItem(c, refOfThisList(c)),
  });

  return {
    // A kubelet relists right after a restart: every container's bytes are made while its first calls are answered.
    async [AFTER_SERVING]() {
      refreshImageRefs();
      await listEncoder.prepare(containers.listed({}));
    },

    async CreateContainer(request, call) {
      const id = await containers.create({ podSandboxId: request.pod_sandbox_id, config: request.config, sandboxConfig: request.sandbox_config }, call.delivered);
      return { container_id: id };
    },

    async StartContainer(request) {
      await containers.start(request.container_id);
      return {};
    },

    async StopContainer(request, call) {
      const timeout = requestTimeoutSeconds(request.timeout, 'timeout');
      try {
        // A caller that gives up stops the escalation: its container had its stop signal, the next StopContainer decides.
        await containers.stop(request.container_id, timeout, call.signal);
      } catch (err) {
        // The CRI: stopping a container that is already gone succeeds (the kubelet retries stops).
        if (!isBerthError(err, 'NotFound')) throw err;
      }
      return {};
    },

    async RemoveContainer(request) {
      await containers.remove(request.container_id);
      return {};
    },

    async ListContainers(request) {
      const filter = filterOf(request.filter);
      refreshImageRefs();
      const complete = !filter.id && !filter.state && !filter.podSandboxId && Object.keys(filter.labelSelector ?? {}).length === 0;
      return listEncoder.encode(containers.listed(filter), complete);
    },

    async StreamContainers(request, sink) {
      const all = listed(filterOf(request.filter));
      await streamInChunks(all, sink, { size: STREAM_CHUNK, wrap: (chunk) => ({ containers: chunk }) });
    },

    async ContainerStatus(request) {
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
      await containers.updateResources(request.container_id, request.linux);
      return {};
    },

    async ReopenContainerLog(request) {
      await containers.reopenLog(request.container_id);
      return {};
    },

    async ExecSync(request) {
      const timeout = requestTimeoutSeconds(request.timeout, 'timeout');
      const result = await containers.execSync(request.container_id, request.cmd ?? [], timeout);
      return { stdout: result.stdout, stderr: result.stderr, exit_code: result.exitCode };
    },

    async CheckpointContainer(request) {
      const timeout = requestTimeoutSeconds(request.timeout, 'timeout');
      await containers.checkpoint(request.container_id, request.location, timeout);
      return {};
    },
  };
}
