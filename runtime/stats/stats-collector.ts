// Container and pod resource usage from cgroups, the writable layer and the
// pod's network namespace, answered without holding the event loop: cgroup
// and network figures are read asynchronously, a bounded number of files at
// a time, and a read taken within the last `reuseMs` is answered again (the
// kubelet's pod and container stats calls arrive together and share one
// read); writable layers come from a background meter. CPU rate (nano cores)
// needs two samples: the previous read per cgroup is kept here, so the rate
// is over the time between two reads, as the kubelet expects from containerd
// and CRI-O.
import { dirname } from 'node:path';
import type { CgroupHierarchy } from '../cgroups/cgroup-hierarchy';
import { readCgroupUsage, readControlFile, type CpuDetail, type MemorySample, type PressureSample, type SwapSample } from '../cgroups/cgroup-usage';
import { Semaphore } from '../common/semaphore';
import type { ContainerView } from '../container/container-types';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import { defaultInterface, readNetnsInterfaces, type InterfaceCounters } from './net-dev';
import { WritableLayerMeter, type LayerMeasurement } from './writable-layer';

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
  /** Unix nanoseconds of the cgroup sample. */
  timestampNs: bigint;
  cpu?: CpuUsageSample;
  memory?: MemoryUsageSample;
  swap?: SwapUsageSample;
  /** The latest background measurement, with its own timestamp. */
  writableLayer?: LayerMeasurement & { mountpoint: string };
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
  /** Every container's upper dir, for the background writable-layer meter. */
  upperDirs?: () => Iterable<string>;
  /** A layer is walked again once its measurement is this old (default 10 s). */
  layerRefreshMs?: number;
  /** Reads younger than this are answered again (default 500 ms; 0 reads every time). */
  reuseMs?: number;
  /** Pod network reads at once, over all stats calls (default 8); control files are batched (control-file-reader.ts). */
  maxConcurrentReads?: number;
}

type CgroupFigures = Pick<ContainerUsage, 'cpu' | 'memory' | 'swap' | 'processes' | 'ioPressure'> & { timestampNs: bigint };

/** Below this gap between two samples a CPU rate is not recomputed. */
const MIN_RATE_WINDOW_NS = 100_000_000n;

/** Unix time in nanoseconds with sub-millisecond precision. */
export function unixNanos(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

/**
 * Results kept for a short window after they came in, concurrent askers
 * sharing one read in flight however long it takes (on a loaded node a read
 * may outlast the window; starting a second one would only add to the load).
 */
class ReuseWindow<T> {
  private readonly entries = new Map<string, { value: Promise<T>; settledAt?: number }>();

  constructor(private readonly windowMs: number) {}

  /** The read in flight or settled within the window under `key`, if any. */
  peek(key: string): Promise<T> | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (hit.settledAt === undefined || performance.now() - hit.settledAt < this.windowMs) return hit.value;
    return undefined;
  }

  get(key: string, read: () => Promise<T>): Promise<T> {
    const reused = this.peek(key);
    if (reused) return reused;
    const entry: { value: Promise<T>; settledAt?: number } = { value: read() };
    this.entries.set(key, entry);
    entry.value.then(
      () => {
        entry.settledAt = performance.now();
      },
      // A failed read is not reused.
      () => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      },
    );
    return entry.value;
  }

  retain(keep: (key: string) => boolean): void {
    for (const key of this.entries.keys()) if (!keep(key)) this.entries.delete(key);
  }
}

export class StatsCollector {
  private readonly previousCpu = new Map<string, { monotonicNs: bigint; usage: bigint; rate: bigint | undefined }>();
  readonly layers: WritableLayerMeter;
  private readonly cgroupReads: ReuseWindow<CgroupFigures>;
  private readonly networkReads: ReuseWindow<PodNetworkUsage | undefined>;
  private readonly reads: Semaphore;

  constructor(private readonly options: StatsCollectorOptions) {
    this.layers = new WritableLayerMeter({ upperDirs: options.upperDirs ?? (() => []), refreshMs: options.layerRefreshMs });
    const reuseMs = options.reuseMs ?? 500;
    this.cgroupReads = new ReuseWindow(reuseMs);
    this.networkReads = new ReuseWindow(reuseMs);
    this.reads = new Semaphore(options.maxConcurrentReads ?? 8);
  }

  get cgroups(): CgroupHierarchy {
    return this.options.cgroups;
  }

  /** Starts the background writable-layer meter. */
  /** firstWalkMs: when the writable-layer meter first walks (WritableLayerMeter.start). */
  start(firstWalkMs = 0): void {
    this.layers.start(firstWalkMs);
  }

  async stop(): Promise<void> {
    await this.layers.stop();
  }

  /** `detail` adds what only pod metrics report (CPU user/system split, throttling, OOM kills). */
  async containerUsage(container: ContainerView, detail = false): Promise<ContainerUsage> {
    const usage: ContainerUsage = { id: container.id, timestampNs: unixNanos() };
    if (container.cgroupPath) Object.assign(usage, await this.cgroupFigures(container.cgroupPath, detail));
    const layer = this.layers.usage(container.upperDir);
    if (layer) usage.writableLayer = { ...layer, mountpoint: this.options.layerMountpoint };
    return usage;
  }

  async podUsage(pod: PodSandboxView, containers: ContainerView[], detail = false): Promise<PodUsage> {
    const cgroup = podCgroupPath(pod, containers);
    const [containerUsages, podFigures, network] = await Promise.all([
      Promise.all(containers.map((c) => this.containerUsage(c, detail))),
      cgroup ? this.cgroupFigures(cgroup, detail) : undefined,
      pod.netnsPath ? this.podNetwork(pod, containers) : undefined,
    ]);
    const usage: PodUsage = { id: pod.id, timestampNs: unixNanos(), containers: containerUsages };
    if (podFigures) Object.assign(usage, podFigures);
    if (!usage.cpu && !usage.memory) sumContainersInto(usage);
    if (network) usage.network = network;
    return usage;
  }

  /** Forgets samples of containers and pods that are gone (called with the ones that still exist). */
  retain(containers: readonly ContainerView[], pods: readonly PodSandboxView[]): void {
    const paths = new Set<string>(containers.map((c) => c.cgroupPath).filter(Boolean));
    for (const pod of pods) {
      const path = podCgroupPath(pod, containers.filter((c) => c.podSandboxId === pod.id));
      if (path) paths.add(path);
    }
    for (const key of this.previousCpu.keys()) if (!paths.has(key)) this.previousCpu.delete(key);
    this.cgroupReads.retain((key) => paths.has(key.slice(key.indexOf(':') + 1)));
    const podIds = new Set(pods.map((p) => p.id));
    this.networkReads.retain((key) => podIds.has(key));
  }

  private podNetwork(pod: PodSandboxView, containers: ContainerView[]): Promise<PodNetworkUsage | undefined> {
    return this.networkReads.get(pod.id, async () => {
      const pids = containers.filter((c) => c.pid > 0).map((c) => c.pid);
      const interfaces = await this.reads.run(() => readNetnsInterfaces(pod.netnsPath, pids));
      if (!interfaces) return undefined;
      const visible = interfaces.filter((i) => i.name !== 'lo');
      return { interfaces: visible, defaultInterface: defaultInterface(visible) };
    });
  }

  /** A detailed read answers a plain ask too; keys are "detail:<path>" and "plain:<path>". */
  private cgroupFigures(cgroupPath: string, detail: boolean): Promise<CgroupFigures> {
    const detailed = this.cgroupReads.peek(`detail:${cgroupPath}`);
    if (detailed) return detailed;
    return this.cgroupReads.get(`${detail ? 'detail' : 'plain'}:${cgroupPath}`, () => this.readCgroupFigures(cgroupPath, detail));
  }

  private async readCgroupFigures(cgroupPath: string, detail: boolean): Promise<CgroupFigures> {
    const sample = await readCgroupUsage(this.options.cgroups, cgroupPath, readControlFile, detail);
    const out: CgroupFigures = { timestampNs: unixNanos() };
    if (sample.cpu) {
      const { usageCoreNanoSeconds, ...detail } = sample.cpu;
      out.cpu = { ...detail, usageCoreNanoSeconds, usageNanoCores: this.cpuRate(cgroupPath, usageCoreNanoSeconds), pressure: sample.pressure.cpu };
    }
    const memory = sample.memory;
    if (memory) {
      out.memory = {
        ...memory,
        availableBytes: memory.limitBytes !== undefined ? Math.max(0, memory.limitBytes - memory.workingSetBytes) : undefined,
        oomKills: sample.oomKills,
        pressure: sample.pressure.memory,
      };
    }
    const swap = sample.swap;
    if (swap) out.swap = { ...swap, availableBytes: swap.limitBytes !== undefined ? Math.max(0, swap.limitBytes - swap.usageBytes) : undefined };
    out.processes = sample.processes;
    out.ioPressure = sample.pressure.io;
    return out;
  }

  private cpuRate(key: string, usage: bigint): bigint | undefined {
    const monotonicNs = process.hrtime.bigint();
    const previous = this.previousCpu.get(key);
    if (previous && monotonicNs - previous.monotonicNs < MIN_RATE_WINDOW_NS) {
      // Two readers a few ms apart would get a rate over a noisy sliver of
      // time: answer with the last rate and keep the older sample as the base.
      return previous.rate;
    }
    let rate: bigint | undefined;
    if (previous && usage >= previous.usage) rate = ((usage - previous.usage) * 1_000_000_000n) / (monotonicNs - previous.monotonicNs);
    this.previousCpu.set(key, { monotonicNs, usage, rate });
    return rate;
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
