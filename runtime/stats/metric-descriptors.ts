// The cAdvisor-compatible metric set served through ListMetricDescriptors and
// ListPodSandboxMetrics. The kubelet turns each descriptor into a Prometheus
// description and appends namespace/pod/container labels itself, so every
// metric carries exactly the label values its descriptor names, in order.
import type { ContainerView } from '../container/container-types';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import type { ContainerUsage, PodUsage } from './stats-collector';

export type MetricKind = 'COUNTER' | 'GAUGE';

export interface MetricDescriptor {
  name: string;
  help: string;
  labelKeys: string[];
  kind: MetricKind;
}

export interface MetricPoint {
  name: string;
  kind: MetricKind;
  labelValues: string[];
  /** Non-negative integer: the CRI carries metric values as uint64. */
  value: bigint;
}

/** id: the container (or pod) id; name: its CRI name; image: what it runs ("" for a pod). */
const BASE = ['id', 'name', 'image'];

const d = (name: string, kind: MetricKind, help: string, extra: string[] = []): MetricDescriptor => ({ name, kind, help, labelKeys: [...BASE, ...extra] });

export const METRIC_DESCRIPTORS: readonly MetricDescriptor[] = [
  d('container_cpu_usage_seconds_total', 'COUNTER', 'Cumulative CPU time consumed in seconds.', ['cpu']),
  d('container_cpu_user_seconds_total', 'COUNTER', 'Cumulative user CPU time consumed in seconds.'),
  d('container_cpu_system_seconds_total', 'COUNTER', 'Cumulative system CPU time consumed in seconds.'),
  d('container_cpu_cfs_periods_total', 'COUNTER', 'Number of elapsed enforcement period intervals.'),
  d('container_cpu_cfs_throttled_periods_total', 'COUNTER', 'Number of throttled period intervals.'),
  d('container_cpu_cfs_throttled_seconds_total', 'COUNTER', 'Total time duration the container has been throttled.'),
  d('container_memory_usage_bytes', 'GAUGE', 'Current memory usage in bytes, including all memory regardless of when it was accessed.'),
  d('container_memory_working_set_bytes', 'GAUGE', 'Current working set in bytes.'),
  d('container_memory_rss', 'GAUGE', 'Size of RSS in bytes.'),
  d('container_memory_swap', 'GAUGE', 'Container swap usage in bytes.'),
  d('container_memory_failures_total', 'COUNTER', 'Cumulative count of memory allocation failures.', ['failure_type', 'scope']),
  d('container_oom_events_total', 'COUNTER', 'Count of out of memory events observed for the container.'),
  d('container_spec_memory_limit_bytes', 'GAUGE', 'Memory limit for the container.'),
  d('container_processes', 'GAUGE', 'Number of processes running inside the container.'),
  d('container_fs_usage_bytes', 'GAUGE', 'Number of bytes that are consumed by the container on this filesystem.', ['device']),
  d('container_fs_inodes_total', 'GAUGE', 'Number of Inodes used by the container on this filesystem.', ['device']),
  d('container_start_time_seconds', 'GAUGE', 'Start time of the container since unix epoch in seconds.'),
  d('container_network_receive_bytes_total', 'COUNTER', 'Cumulative count of bytes received', ['interface']),
  d('container_network_receive_packets_total', 'COUNTER', 'Cumulative count of packets received', ['interface']),
  d('container_network_receive_packets_dropped_total', 'COUNTER', 'Cumulative count of packets dropped while receiving', ['interface']),
  d('container_network_receive_errors_total', 'COUNTER', 'Cumulative count of errors encountered while receiving', ['interface']),
  d('container_network_transmit_bytes_total', 'COUNTER', 'Cumulative count of bytes transmitted', ['interface']),
  d('container_network_transmit_packets_total', 'COUNTER', 'Cumulative count of packets transmitted', ['interface']),
  d('container_network_transmit_packets_dropped_total', 'COUNTER', 'Cumulative count of packets dropped while transmitting', ['interface']),
  d('container_network_transmit_errors_total', 'COUNTER', 'Cumulative count of errors encountered while transmitting', ['interface']),
];

const BY_NAME = new Map(METRIC_DESCRIPTORS.map((desc) => [desc.name, desc]));

const NS_PER_SECOND = 1_000_000_000n;

class PointList {
  readonly points: MetricPoint[] = [];
  constructor(private readonly base: string[]) {}

  add(name: string, value: bigint | number | undefined, extra: string[] = []): void {
    if (value === undefined) return;
    const desc = BY_NAME.get(name);
    if (!desc) throw new Error(`metric ${name} has no descriptor`);
    if (desc.labelKeys.length !== this.base.length + extra.length) throw new Error(`metric ${name}: label values do not match its descriptor`);
    const v = typeof value === 'bigint' ? value : BigInt(Math.max(0, Math.floor(value)));
    this.points.push({ name, kind: desc.kind, labelValues: [...this.base, ...extra], value: v < 0n ? 0n : v });
  }
}

function cgroupPoints(list: PointList, usage: Pick<ContainerUsage, 'cpu' | 'memory' | 'swap' | 'processes'>): void {
  const { cpu, memory } = usage;
  if (cpu) {
    list.add('container_cpu_usage_seconds_total', cpu.usageCoreNanoSeconds / NS_PER_SECOND, ['total']);
    list.add('container_cpu_user_seconds_total', cpu.userNanoSeconds !== undefined ? cpu.userNanoSeconds / NS_PER_SECOND : undefined);
    list.add('container_cpu_system_seconds_total', cpu.systemNanoSeconds !== undefined ? cpu.systemNanoSeconds / NS_PER_SECOND : undefined);
    list.add('container_cpu_cfs_periods_total', cpu.periods);
    list.add('container_cpu_cfs_throttled_periods_total', cpu.throttledPeriods);
    list.add('container_cpu_cfs_throttled_seconds_total', cpu.throttledNanoSeconds !== undefined ? cpu.throttledNanoSeconds / NS_PER_SECOND : undefined);
  }
  if (memory) {
    list.add('container_memory_usage_bytes', memory.usageBytes);
    list.add('container_memory_working_set_bytes', memory.workingSetBytes);
    list.add('container_memory_rss', memory.rssBytes);
    list.add('container_memory_failures_total', memory.pageFaults - memory.majorPageFaults, ['pgfault', 'container']);
    list.add('container_memory_failures_total', memory.majorPageFaults, ['pgmajfault', 'container']);
    list.add('container_oom_events_total', memory.oomKills);
    list.add('container_spec_memory_limit_bytes', memory.limitBytes ?? 0);
  }
  list.add('container_memory_swap', usage.swap?.usageBytes);
  list.add('container_processes', usage.processes);
}

export function containerMetricPoints(container: ContainerView, usage: ContainerUsage): MetricPoint[] {
  const list = new PointList([container.id, container.config.metadata?.name ?? '', container.imageRef || container.config.image?.image || '']);
  cgroupPoints(list, usage);
  if (usage.writableLayer) {
    list.add('container_fs_usage_bytes', usage.writableLayer.usedBytes, [usage.writableLayer.mountpoint]);
    list.add('container_fs_inodes_total', usage.writableLayer.inodesUsed, [usage.writableLayer.mountpoint]);
  }
  if (container.startedAt && container.startedAt !== '0') list.add('container_start_time_seconds', BigInt(container.startedAt) / NS_PER_SECOND);
  return list.points;
}

export function podMetricPoints(pod: PodSandboxView, usage: PodUsage): MetricPoint[] {
  const list = new PointList([pod.id, pod.config.metadata?.name ?? '', '']);
  cgroupPoints(list, usage);
  for (const iface of usage.network?.interfaces ?? []) {
    list.add('container_network_receive_bytes_total', iface.rxBytes, [iface.name]);
    list.add('container_network_receive_packets_total', iface.rxPackets, [iface.name]);
    list.add('container_network_receive_packets_dropped_total', iface.rxDropped, [iface.name]);
    list.add('container_network_receive_errors_total', iface.rxErrors, [iface.name]);
    list.add('container_network_transmit_bytes_total', iface.txBytes, [iface.name]);
    list.add('container_network_transmit_packets_total', iface.txPackets, [iface.name]);
    list.add('container_network_transmit_packets_dropped_total', iface.txDropped, [iface.name]);
    list.add('container_network_transmit_errors_total', iface.txErrors, [iface.name]);
  }
  return list.points;
}
