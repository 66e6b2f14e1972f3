// Builds the model in dependency order, each part from the parts built before
// it, with explicit constructor arguments: events and metrics, the host's
// network and cgroups, images, the pods' records, containers (which look pods
// up in those records), then the pod lifecycle (which stops and removes a
// pod's containers through the container model), stats and streaming.
import { describeError } from '../runtime/errors';
import { join } from 'node:path';
import type { BerthConfig } from '../runtime/config';
import { CgroupHierarchy } from '../runtime/cgroups/cgroup-hierarchy';
import { SystemdCgroups } from '../runtime/cgroups/systemd-cgroups';
import { ContainerEventBus } from '../runtime/events/container-event-bus';
import { RuntimeMetrics } from '../runtime/stats/runtime-metrics';
import { StatsCollector } from '../runtime/stats/stats-collector';
import type { HostFacts } from '../runtime/host/host-facts';
import type { HostProbeCache } from '../runtime/host/host-probe-cache';
import { RuntimeReadinessProbe } from '../runtime/host/runtime-readiness';
import type { BerthDatabase } from '../runtime/store/database';
import { CniNetwork } from '../cni/cni-network';
import { loadNative } from '../native';
import { NodeNetwork } from '../runtime/sandbox/node-network';
import { PodSandboxes } from '../runtime/sandbox/pod-sandboxes';
import { SandboxRecords } from '../runtime/sandbox/sandbox-records';
import { SandboxStore } from '../runtime/sandbox/sandbox-store';
import { Containers } from '../runtime/container/containers';
import { ContainerStore } from '../runtime/container/container-store';
import { ContainerStreamingRuntime } from '../runtime/exec/container-streaming-runtime';
import { OverlayRootfsMounter } from '../runtime/image/rootfs-mounter';
import { Images } from '../runtime/image/images';
import { StreamingServer } from './streaming/streaming-server';
import type { ShimServices } from './services';
import type { Logger } from './logger';
import type { BerthMetrics } from './metrics';

export interface DaemonParts {
  /** What the handler groups draw on. */
  services: ShimServices;
  /** What only the daemon itself uses (start-up, reload, stop). */
  podNetwork: CniNetwork;
  /** berth's fallback network, the conf dir's watch and the pod CIDR (started by the daemon). */
  nodeNetwork: NodeNetwork;
  runtimeMetrics: RuntimeMetrics;
  systemd: SystemdCgroups | undefined;
}

export async function buildDaemonParts(config: BerthConfig, log: Logger, host: HostFacts, db: BerthDatabase, metrics: BerthMetrics, probes?: HostProbeCache): Promise<DaemonParts> {
  const events = new ContainerEventBus({
    onOverflow: (subscription, queued) => log.warn({ subscription, queued }, 'container events subscriber fell behind; its stream is ended'),
  });
  const runtimeMetrics = new RuntimeMetrics(metrics.registry);
  const podCidr = { value: '' };

  // NetworkReady follows the CNI network's STATUS (CNI 1.1) or its config and plugins being present;
  // the conf dir is watched, so a cluster's config is used for new pods as soon as it appears.
  const podNetwork = new CniNetwork({ confDir: config.cni.conf_dir, binDirs: config.cni.bin_dirs, cacheDir: config.cni.cache_dir });
  const cni = config.cni;
  const nodeNetwork = new NodeNetwork({
    network: podNetwork, writeDefault: cni.write_default_conflist, log,
    defaults: { name: cni.default_network_name, bridge: cni.default_bridge, subnet: cni.default_subnet },
  });
  const cgroups = CgroupHierarchy.detect(config.cgroup.driver, host.cgroup);
  const systemd = config.cgroup.driver === 'systemd' ? await connectSystemd(cgroups, config.cgroup.systemd_socket) : undefined;

  const images = new Images({ config, db, log, metrics: { observeImagePull: (s, b, o) => runtimeMetrics.observeImagePull(s, b, o) } });
  const sandboxRecords = new SandboxRecords(new SandboxStore(db));
  const containers = new Containers({
    config, host, log,
    sandboxes: sandboxRecords,
    store: new ContainerStore(db),
    images,
    layerHolds: images,
    rootfs: new OverlayRootfsMounter(),
    events,
    cgroupRelativePath: (p) => cgroups.relativePath(p),
    cgroupProcesses: (p) => cgroups.processes(p),
    cgroupProcsFiles: (p) => cgroups.procsFiles(p),
    observeOciCall: (operation, seconds, runtime, outcome) => runtimeMetrics.observeOciCall(operation, seconds, runtime, outcome),
  });
  const sandboxes = new PodSandboxes({
    config, records: sandboxRecords, containers, cgroups, systemd, network: podNetwork, native: loadNative(), log,
    podCidr: () => podCidr.value,
    userNamespaces: host.mountFeatures.userNamespaces,
    observeCniCall: (operation, seconds, outcome) => runtimeMetrics.observeCniCall(operation, seconds, outcome),
    events,
  });
  const stats = new StatsCollector({ cgroups, layerMountpoint: config.root, upperDirs: () => containers.list().map((c) => c.upperDir) });
  images.setWritableLayers(stats.layers);
  const streaming = new StreamingServer({
    address: config.streaming.address,
    port: config.streaming.port,
    tokenTtlSeconds: config.streaming.token_ttl_seconds,
    log,
    runtime: new ContainerStreamingRuntime({ containers, sandboxes: sandboxRecords, workDir: join(config.state, 'exec') }),
  });

  const services: ShimServices = {
    config, log, host, podCidr, events, stats, sandboxes, images, containers, streaming,
    network: { networkStatus: () => nodeNetwork.status(), applyPodCidr: (cidr) => nodeNetwork.applyPodCidr(cidr) },
    runtimeReadiness: RuntimeReadinessProbe.forHost(config, host, { versions: probes?.versions }),
  };
  return { services, podNetwork, nodeNetwork, runtimeMetrics, systemd };
}

/** The systemd driver needs systemd's manager: without it no pod slice can be made, so berthd does not start. */
async function connectSystemd(cgroups: CgroupHierarchy, socket: string): Promise<SystemdCgroups> {
  try {
    return await SystemdCgroups.connect(cgroups, socket ? { socket } : {});
  } catch (err) {
    throw new Error(`cgroup.driver is "systemd" but systemd's manager cannot be reached (${describeError(err)}); run berthd under systemd, set cgroup.systemd_socket, or use cgroup.driver = "cgroupfs"`);
  }
}
