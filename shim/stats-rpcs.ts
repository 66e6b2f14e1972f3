// Stats and metrics RPCs: ContainerStats, PodSandboxStats, their List and Stream
// twins, ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics.
// The numbers come from runtime/stats; this file filters, maps and chunks.
import { criServiceDefinitions } from '../cri-proto';
import type { ContainerStats } from '../cri-proto/generated/runtime/v1/ContainerStats';
import type { ContainerStatsFilter__Output } from '../cri-proto/generated/runtime/v1/ContainerStatsFilter';
import type { PodSandboxMetrics } from '../cri-proto/generated/runtime/v1/PodSandboxMetrics';
import type { PodSandboxStats } from '../cri-proto/generated/runtime/v1/PodSandboxStats';
import type { PodSandboxStatsFilter__Output } from '../cri-proto/generated/runtime/v1/PodSandboxStatsFilter';
import type { PsiStats } from '../cri-proto/generated/runtime/v1/PsiStats';
import type { UInt64Value } from '../cri-proto/generated/runtime/v1/UInt64Value';
import type { PressureSample } from '../runtime/cgroups/cgroup-usage';
import type { ContainerLookup, ContainerView } from '../runtime/container/container-types';
import { invalidArgument, notFound } from '../runtime/errors';
import type { PodSandboxView } from '../runtime/sandbox/sandbox-types';
import { METRIC_DESCRIPTORS, containerMetricPoints, podMetricPoints, type MetricPoint } from '../runtime/stats/metric-descriptors';
import type { ContainerUsage, PodUsage } from '../runtime/stats/stats-collector';
import type { ShimServices } from './services';
import type { CriHandlers, ResponseSink } from './handler';
import { encodeInSlices, responseSerializer } from './list-encoding';
import { streamInChunks } from './stream-chunks';

/** Items per message of a Stream* RPC: bounded messages however many pods the node runs. */
export const STATS_STREAM_CHUNK = 50;

function containerLookup(ctx: Pick<ShimServices, 'containers' | 'sandboxes' | 'stats'>): ContainerLookup {
  return ctx.containers;
}

function labelsMatch(labels: Record<string, string> | undefined, selector: Record<string, string> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

export function filterContainers(all: ContainerView[], filter: ContainerStatsFilter__Output | null | undefined): ContainerView[] {
  if (!filter) return all;
  return all.filter(
    (c) =>
      (!filter.id || c.id.startsWith(filter.id)) &&
      (!filter.pod_sandbox_id || c.podSandboxId.startsWith(filter.pod_sandbox_id)) &&
      labelsMatch(c.config.labels, filter.label_selector),
  );
}

export function filterPods(all: PodSandboxView[], filter: PodSandboxStatsFilter__Output | null | undefined): PodSandboxView[] {
  if (!filter) return all;
  return all.filter((p) => (!filter.id || p.id.startsWith(filter.id)) && labelsMatch(p.config.labels, filter.label_selector));
}

function psi(sample: PressureSample | undefined): PsiStats | null {
  if (!sample) return null;
  const data = (line: PressureSample['some']) => ({ Total: String(line.totalMicros), Avg10: line.avg10, Avg60: line.avg60, Avg300: line.avg300 });
  return { Some: data(sample.some), Full: sample.full ? data(sample.full) : null };
}

const u64 = (value: bigint | number | undefined): UInt64Value | null => (value === undefined ? null : { value: String(value) });

export function toContainerStats(container: ContainerView, usage: ContainerUsage): ContainerStats {
  const timestamp = String(usage.timestampNs);
  const { cpu, memory, swap, writableLayer } = usage;
  return {
    attributes: { id: container.id, metadata: container.config.metadata, labels: container.config.labels, annotations: container.config.annotations },
    cpu: { timestamp, usage_core_nano_seconds: u64(cpu?.usageCoreNanoSeconds), usage_nano_cores: u64(cpu?.usageNanoCores), psi: psi(cpu?.pressure) },
    memory: {
      timestamp,
      psi: psi(memory?.pressure),
      working_set_bytes: u64(memory?.workingSetBytes),
      available_bytes: u64(memory?.availableBytes),
      usage_bytes: u64(memory?.usageBytes),
      rss_bytes: u64(memory?.rssBytes),
      page_faults: u64(memory?.pageFaults),
      major_page_faults: u64(memory?.majorPageFaults),
    },
    writable_layer: {
      // When the background meter last walked the layer, not when this answer was made.
      timestamp: writableLayer ? String(writableLayer.timestampNs) : timestamp,
      fs_id: writableLayer ? { mountpoint: writableLayer.mountpoint } : null,
      used_bytes: u64(writableLayer?.usedBytes),
      inodes_used: u64(writableLayer?.inodesUsed),
    },
    swap: swap ? { timestamp, swap_usage_bytes: u64(swap.usageBytes), swap_available_bytes: u64(swap.availableBytes) } : null,
    io: usage.ioPressure ? { timestamp, psi: psi(usage.ioPressure) } : null,
  };
}

export function toPodSandboxStats(pod: PodSandboxView, containers: ContainerView[], usage: PodUsage): PodSandboxStats {
  const timestamp = String(usage.timestampNs);
  const byId = new Map(containers.map((c) => [c.id, c]));
  const iface = (i: NonNullable<PodUsage['network']>['interfaces'][number]) => ({
    name: i.name,
    rx_bytes: u64(i.rxBytes),
    rx_errors: u64(i.rxErrors),
    tx_bytes: u64(i.txBytes),
    tx_errors: u64(i.txErrors),
  });
  return {
    attributes: { id: pod.id, metadata: pod.config.metadata, labels: pod.config.labels, annotations: pod.config.annotations },
    linux: {
      cpu: { timestamp, usage_core_nano_seconds: u64(usage.cpu?.usageCoreNanoSeconds), usage_nano_cores: u64(usage.cpu?.usageNanoCores), psi: psi(usage.cpu?.pressure) },
      memory: {
        timestamp,
        psi: psi(usage.memory?.pressure),
        working_set_bytes: u64(usage.memory?.workingSetBytes),
        available_bytes: u64(usage.memory?.availableBytes),
        usage_bytes: u64(usage.memory?.usageBytes),
        rss_bytes: u64(usage.memory?.rssBytes),
        page_faults: u64(usage.memory?.pageFaults),
        major_page_faults: u64(usage.memory?.majorPageFaults),
      },
      network: usage.network
        ? {
            timestamp,
            default_interface: usage.network.defaultInterface ? iface(usage.network.defaultInterface) : null,
            interfaces: usage.network.interfaces.map(iface),
          }
        : null,
      process: { timestamp, process_count: u64(usage.processes) },
      io: usage.ioPressure ? { timestamp, psi: psi(usage.ioPressure) } : null,
      containers: usage.containers.map((c) => toContainerStats(byId.get(c.id)!, c)),
    },
  };
}

function toCriMetrics(points: MetricPoint[], timestamp: string) {
  return points.map((p) => ({ name: p.name, timestamp, metric_type: p.kind, label_values: p.labelValues, value: { value: String(p.value) } }));
}

/** Containers by pod, grouped once per call rather than filtered once per pod. */
function containersByPod(all: ContainerView[]): (podId: string) => ContainerView[] {
  const byPod = new Map<string, ContainerView[]>();
  for (const c of all) {
    const list = byPod.get(c.podSandboxId);
    if (list) list.push(c);
    else byPod.set(c.podSandboxId, [c]);
  }
  return (podId) => byPod.get(podId) ?? [];
}

export function statsHandlers(ctx: Pick<ShimServices, 'containers' | 'sandboxes' | 'stats'>): CriHandlers {
  const service = criServiceDefinitions().RuntimeService;
  const containerStatsEncoding = responseSerializer(service, 'ListContainerStats');
  const podStatsEncoding = responseSerializer(service, 'ListPodSandboxStats');
  const containerStats = async (c: ContainerView): Promise<ContainerStats> => toContainerStats(c, await ctx.stats.containerUsage(c));

  const podStats = (containersOf: (podId: string) => ContainerView[]) => async (pod: PodSandboxView): Promise<PodSandboxStats> => {
    const containers = containersOf(pod.id);
    return toPodSandboxStats(pod, containers, await ctx.stats.podUsage(pod, containers));
  };

  const podMetrics = (containersOf: (podId: string) => ContainerView[]) => async (pod: PodSandboxView): Promise<PodSandboxMetrics> => {
    const containers = containersOf(pod.id);
    const usage = await ctx.stats.podUsage(pod, containers, true);
    const timestamp = String(usage.timestampNs);
    const byId = new Map(containers.map((c) => [c.id, c]));
    return {
      pod_sandbox_id: pod.id,
      metrics: toCriMetrics(podMetricPoints(pod, usage), timestamp),
      container_metrics: usage.containers.map((cu) => ({
        container_id: cu.id,
        metrics: toCriMetrics(containerMetricPoints(byId.get(cu.id)!, cu), timestamp),
      })),
    };
  };

  /** Samples of containers and pods that are gone would otherwise accumulate for the life of berthd. */
  const prune = (): void => ctx.stats.retain(containerLookup(ctx).list(), ctx.sandboxes.list());

  return {
    async ContainerStats(request) {
      if (!request.container_id) throw invalidArgument('container_id: required');
      const container = containerLookup(ctx).get(request.container_id);
      if (!container) throw notFound(`container "${request.container_id}" not found`);
      return { stats: await containerStats(container) };
    },

    async ListContainerStats(request) {
      const containers = filterContainers(containerLookup(ctx).list(), request.filter);
      const stats = await Promise.all(containers.map(containerStats));
      prune();
      return encodeInSlices('stats', containerStatsEncoding, stats);
    },

    async StreamContainerStats(request, sink) {
      const containers = filterContainers(containerLookup(ctx).list(), request.filter);
      await streamInChunks(containers, sink, { size: STATS_STREAM_CHUNK, map: containerStats, wrap: (chunk) => ({ container_stats: chunk }) });
    },

    async PodSandboxStats(request) {
      const pod = ctx.sandboxes.resolve(request.pod_sandbox_id);
      return { stats: await podStats(containersByPod(containerLookup(ctx).list()))(pod) };
    },

    async ListPodSandboxStats(request) {
      const pods = filterPods(ctx.sandboxes.list(), request.filter);
      const stats = await Promise.all(pods.map(podStats(containersByPod(containerLookup(ctx).list()))));
      prune();
      return encodeInSlices('stats', podStatsEncoding, stats);
    },

    async StreamPodSandboxStats(request, sink) {
      const pods = filterPods(ctx.sandboxes.list(), request.filter);
      await streamInChunks(pods, sink, { size: STATS_STREAM_CHUNK, map: podStats(containersByPod(containerLookup(ctx).list())), wrap: (chunk) => ({ pod_sandbox_stats: chunk }) });
    },

    async ListMetricDescriptors() {
      return { descriptors: METRIC_DESCRIPTORS.map((d) => ({ name: d.name, help: d.help, label_keys: d.labelKeys })) };
    },

    async ListPodSandboxMetrics() {
      const pods = ctx.sandboxes.list().filter((p) => p.state === 'SANDBOX_READY');
      return { pod_metrics: await Promise.all(pods.map(podMetrics(containersByPod(containerLookup(ctx).list())))) };
    },

    async StreamPodSandboxMetrics(_request, sink) {
      const pods = ctx.sandboxes.list().filter((p) => p.state === 'SANDBOX_READY');
      await streamInChunks(pods, sink, { size: STATS_STREAM_CHUNK, map: podMetrics(containersByPod(containerLookup(ctx).list())), wrap: (chunk) => ({ pod_sandbox_metrics: chunk }) });
    },
  };
}
