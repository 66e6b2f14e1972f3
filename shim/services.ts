// The services the daemon builds (shim/daemon.ts, in dependency order) and the
// handler groups draw on. Each group declares the few it uses as a Pick of
// this type, so a handler never sees the store, the cgroups or the metrics.
import type { NetworkStatus } from '../cni/cni-network';
import type { BerthConfig } from '../runtime/config';
import type { ContainerEventBus } from '../runtime/events/container-event-bus';
import type { StatsCollector } from '../runtime/stats/stats-collector';
import type { HostFacts } from '../runtime/host/host-facts';
import type { RuntimeReadiness } from '../runtime/host/runtime-readiness';
import type { PodSandboxes } from '../runtime/sandbox/pod-sandboxes';
import type { Images } from '../runtime/image/images';
import type { Containers } from '../runtime/container/containers';
import type { StreamingServer } from './streaming/streaming-server';
import type { Logger } from './logger';

/** Whether pods can get a network now (Status' NetworkReady condition), and the kubelet's pod CIDR for it. */
export interface NetworkReadiness {
  networkStatus(): Promise<NetworkStatus>;
  /** UpdateRuntimeConfig's pod CIDR: written into berth's fallback network (never a cluster's). */
  applyPodCidr(cidr: string): Promise<void>;
}

/** Whether containers can run now (Status' RuntimeReady condition): runtime/host/runtime-readiness.ts. */
export interface RuntimeReadinessSource {
  current(): Promise<RuntimeReadiness>;
}

export interface ShimServices {
  config: BerthConfig;
  log: Logger;
  host: HostFacts;
  network: NetworkReadiness;
  runtimeReadiness: RuntimeReadinessSource;
  /** Pod CIDR last given by the kubelet through UpdateRuntimeConfig ("" until then). */
  podCidr: { value: string };
  /** Container lifecycle events: the container model publishes, GetContainerEvents subscribes. */
  events: ContainerEventBus;
  /** Container and pod usage from cgroups, writable layers and pod network namespaces. */
  stats: StatsCollector;
  /** Pod sandboxes: run, stop, remove, status, list. */
  sandboxes: PodSandboxes;
  /** Images (pull, list, remove, ImageFsInfo; forContainer/holdLayers for the container model). */
  images: Images;
  /** Containers (a ContainerLookup for stats/events, ContainerSessions for streaming; lifecycle, exec). */
  containers: Containers;
  /** The exec/attach/port-forward streaming server: urlFor() registers a request and returns its single-use URL. */
  streaming: StreamingServer;
}
