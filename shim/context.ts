// Everything a handler group may use, built once by shim/daemon.ts. The model
// objects live in runtime/; the shim only holds them.
import type { BerthConfig } from '../runtime/config';
import type { CgroupHierarchy } from '../runtime/cgroups/cgroup-hierarchy';
import type { ContainerEventBus } from '../runtime/events/container-event-bus';
import type { RuntimeMetrics } from '../runtime/stats/runtime-metrics';
import type { StatsCollector } from '../runtime/stats/stats-collector';
import type { HostFacts } from '../runtime/host/host-facts';
import type { RuntimeReadiness } from '../runtime/host/runtime-readiness';
import type { BerthDatabase } from '../runtime/store/database';
import type { PodSandboxes } from '../runtime/sandbox/pod-sandboxes';
import type { Images } from '../runtime/image/images';
import type { Containers } from '../runtime/container/containers';
import type { StreamingServer } from './streaming/streaming-server';
import type { Logger } from './logger';
import type { BerthMetrics } from './metrics';

/** Whether pods can get a network now (Status' NetworkReady condition). */
export interface NetworkReadiness {
  networkStatus(): Promise<{ ready: boolean; reason: string; message: string }>;
}

/** Whether containers can run now (Status' RuntimeReady condition): runtime/host/runtime-readiness.ts. */
export interface RuntimeReadinessSource {
  current(): Promise<RuntimeReadiness>;
}

export interface ShimContext {
  config: BerthConfig;
  log: Logger;
  metrics: BerthMetrics;
  host: HostFacts;
  db: BerthDatabase;
  network: NetworkReadiness;
  runtimeReadiness: RuntimeReadinessSource;
  /** Pod CIDR last given by the kubelet through UpdateRuntimeConfig ("" until then). */
  podCidr: { value: string };
  /** The host's cgroup hierarchies (v1, v2 or hybrid) under the configured driver: resolve, create, remove, apply resources. */
  cgroups: CgroupHierarchy;
  /** Container lifecycle events: the container model publishes, GetContainerEvents subscribes. */
  events: ContainerEventBus;
  /** OCI/CNI call latency, image pulls, restart recoveries, pods/containers by state (on ctx.metrics.registry). */
  runtimeMetrics: RuntimeMetrics;
  /** Container and pod usage from cgroups, writable layers and pod network namespaces. */
  stats: StatsCollector;
  /** Pod sandboxes (a SandboxLookup for the container model; setContainerHooks registers its stop/remove hooks). */
  sandboxes: PodSandboxes;
  /** Images (pull, list, remove, ImageFsInfo; forContainer/holdLayers for the container model). */
  images: Images;
  /** Containers (a ContainerLookup for stats/events, ContainerSessions for streaming; lifecycle, exec). */
  containers: Containers;
  /** The exec/attach/port-forward streaming server: urlFor() registers a request and returns its single-use URL. */
  streaming: StreamingServer;
}
