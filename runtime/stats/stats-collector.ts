// Container and pod resource usage from cgroups, the writable layer and the
// pod's network namespace. CPU rate (nano cores) needs two samples: the
// previous one per cgroup is kept here, so the rate is over the time between
// two stats calls, as the kubelet expects from containerd and CRI-O.
import { dirname } from 'node:path';
import type { CgroupHierarchy } from '../cgroups/cgroup-hierarchy';
import {
  readCpu,
  readCpuDetail,
  readMemory,
  readOomKills,
  readPressure,
  readProcessCount,
  readSwap,
  type CpuDetail,
  type MemorySample,
  type PressureSample,
  type SwapSample,
} from '../cgroups/cgroup-usage';
import type { ContainerView } from '../container/container-types';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import { defaultInterface, readNetnsInterfaces, type InterfaceCounters } from './net-dev';
import { WritableLayerMeter, type LayerUsage } from './writable-layer';

export interface CpuUsageSample extends CpuDetail {
  usageCoreNanoSeconds: bigint;
  /** undefined on the first sample of a cgroup. */
  usageNanoCores: bigint | undefined;
  pressure?: PressureSample;
}

export interface MemoryUsageSample extends MemorySample {
  /** limit - working set, when limited. */
  availableBytes: number | undefined;
  oomKills: number | undefined;
  pressure?: PressureSample;
}

export interface SwapUsageSample extends SwapSample {
  availableBytes: number | undefined;
}

export interface ContainerUsage {
  id: string;
  /** Unix nanoseconds of the sample. */
  timestampNs: bigint;
  cpu?: CpuUsageSample;
  memory?: MemoryUsageSample;
  swap?: SwapUsageSample;
  writableLayer?: LayerUsage & { mountpoint: string };
  processes?: number;
  ioPressure?: PressureSample;
}

export interface PodNetworkUsage {
  interfaces: InterfaceCounters[];
  defaultInterface: InterfaceCounters | undefined;
}

export interface PodUsage {
  id: string;
  timestampNs: bigint;
  cpu?: CpuUsageSample;
  memory?: MemoryUsageSample;
  ioPressure?: PressureSample;
  network?: PodNetworkUsage;
  processes?: number;
  containers: ContainerUsage[];
}

export interface StatsCollectorOptions {
  cgroups: CgroupHierarchy;
  /** Reported as the writable layer's filesystem (the kubelet matches it with ImageFsInfo). */
  layerMountpoint: string;
  layerCacheMs?: number;
}

/** Below this gap between two samples a CPU rate is not recomputed. */
const MIN_RATE_WINDOW_NS = 100_000_000n;

/** Unix time in nanoseconds with sub-millisecond precision. */
export function unixNanos(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

export class StatsCollector {
  private readonly previousCpu = new Map<string, { monotonicNs: bigint; usage: bigint; rate: bigint | undefined }>();
  private readonly layers: WritableLayerMeter;

  constructor(private readonly options: StatsCollectorOptions) {
    this.layers = new WritableLayerMeter(options.layerCacheMs ?? 2000);
  }

  get cgroups(): CgroupHierarchy {
    return this.options.cgroups;
  }

  async containerUsage(container: ContainerView): Promise<ContainerUsage> {
    const usage: ContainerUsage = { id: container.id, timestampNs: unixNanos() };
    if (container.cgroupPath) Object.assign(usage, this.cgroupUsage(`container:${container.id}`, container.cgroupPath));
    const layer = await this.layers.usage(container.upperDir);
    if (layer) usage.writableLayer = { ...layer, mountpoint: this.options.layerMountpoint };
    return usage;
  }

  async podUsage(pod: PodSandboxView, containers: ContainerView[]): Promise<PodUsage> {
    const containerUsages = await Promise.all(containers.map((c) => this.containerUsage(c)));
    const usage: PodUsage = { id: pod.id, timestampNs: unixNanos(), containers: containerUsages };
    const cgroup = podCgroupPath(pod, containers);
    if (cgroup) Object.assign(usage, this.cgroupUsage(`pod:${pod.id}`, cgroup));
    if (!usage.cpu && !usage.memory) sumContainersInto(usage);
    if (pod.netnsPath) {
      const interfaces = await readNetnsInterfaces(pod.netnsPath, containers.filter((c) => c.pid > 0).map((c) => c.pid));
      if (interfaces) {
        const visible = interfaces.filter((i) => i.name !== 'lo');
        usage.network = { interfaces: visible, defaultInterface: defaultInterface(visible) };
      }
    }
    return usage;
  }

  /** Forgets CPU samples of containers and pods that are gone (called with the ids that still exist). */
  retain(containerIds: Iterable<string>, podIds: Iterable<string>, upperDirs: Iterable<string> = []): void {
    const keep = new Set<string>([...[...containerIds].map((id) => `container:${id}`), ...[...podIds].map((id) => `pod:${id}`)]);
    for (const key of this.previousCpu.keys()) if (!keep.has(key)) this.previousCpu.delete(key);
    this.layers.retain(upperDirs);
  }

  private cgroupUsage(key: string, cgroupPath: string): Pick<ContainerUsage, 'cpu' | 'memory' | 'swap' | 'processes' | 'ioPressure'> {
    const { cgroups } = this.options;
    const out: Pick<ContainerUsage, 'cpu' | 'memory' | 'swap' | 'processes' | 'ioPressure'> = {};
    const cpu = readCpu(cgroups, cgroupPath);
    if (cpu) {
      const monotonicNs = process.hrtime.bigint();
      const previous = this.previousCpu.get(key);
      let usageNanoCores: bigint | undefined;
      if (previous && monotonicNs - previous.monotonicNs < MIN_RATE_WINDOW_NS) {
        // Two callers (kubelet, crictl) a few ms apart would get a rate over a noisy sliver of
        // time: answer with the last rate and keep the older sample as the base.
        usageNanoCores = previous.rate;
      } else {
        if (previous && cpu.usageCoreNanoSeconds >= previous.usage) {
          usageNanoCores = ((cpu.usageCoreNanoSeconds - previous.usage) * 1_000_000_000n) / (monotonicNs - previous.monotonicNs);
        }
        this.previousCpu.set(key, { monotonicNs, usage: cpu.usageCoreNanoSeconds, rate: usageNanoCores });
      }
      out.cpu = {
        ...readCpuDetail(cgroups, cgroupPath),
        usageCoreNanoSeconds: cpu.usageCoreNanoSeconds,
        usageNanoCores,
        pressure: readPressure(cgroups, cgroupPath, 'cpu'),
      };
    }
    const memory = readMemory(cgroups, cgroupPath);
    if (memory) {
      out.memory = {
        ...memory,
        availableBytes: memory.limitBytes !== undefined ? Math.max(0, memory.limitBytes - memory.workingSetBytes) : undefined,
        oomKills: readOomKills(cgroups, cgroupPath),
        pressure: readPressure(cgroups, cgroupPath, 'memory'),
      };
    }
    const swap = readSwap(cgroups, cgroupPath);
    if (swap) out.swap = { ...swap, availableBytes: swap.limitBytes !== undefined ? Math.max(0, swap.limitBytes - swap.usageBytes) : undefined };
    out.processes = readProcessCount(cgroups, cgroupPath);
    out.ioPressure = readPressure(cgroups, cgroupPath, 'io');
    return out;
  }
}

/** The pod's own cgroup: its cgroup parent, or else the one directory all its containers share. */
export function podCgroupPath(pod: PodSandboxView, containers: ContainerView[]): string | undefined {
  if (pod.cgroupParent) return pod.cgroupParent;
  const parents = new Set(containers.filter((c) => c.cgroupPath && !c.cgroupPath.includes(':')).map((c) => dirname(c.cgroupPath)));
  if (parents.size !== 1) return undefined;
  const [parent] = parents;
  return parent === '/' ? undefined : parent;
}

/** Without a readable pod cgroup the pod is the sum of its containers. */
function sumContainersInto(pod: PodUsage): void {
  const withCpu = pod.containers.filter((c) => c.cpu);
  if (withCpu.length) {
    const rates = withCpu.map((c) => c.cpu!.usageNanoCores);
    pod.cpu = {
      usageCoreNanoSeconds: withCpu.reduce((sum, c) => sum + c.cpu!.usageCoreNanoSeconds, 0n),
      usageNanoCores: rates.every((r) => r !== undefined) ? rates.reduce((sum, r) => sum! + r!, 0n) : undefined,
    };
  }
  const withMemory = pod.containers.filter((c) => c.memory);
  if (withMemory.length) {
    const add = (pick: (m: MemoryUsageSample) => number): number => withMemory.reduce((sum, c) => sum + pick(c.memory!), 0);
    pod.memory = {
      usageBytes: add((m) => m.usageBytes),
      workingSetBytes: add((m) => m.workingSetBytes),
      rssBytes: add((m) => m.rssBytes),
      pageFaults: add((m) => m.pageFaults),
      majorPageFaults: add((m) => m.majorPageFaults),
      limitBytes: undefined,
      availableBytes: undefined,
      oomKills: undefined,
    };
  }
  const withProcesses = pod.containers.filter((c) => c.processes !== undefined);
  if (withProcesses.length) pod.processes = withProcesses.reduce((sum, c) => sum + c.processes!, 0);
}
