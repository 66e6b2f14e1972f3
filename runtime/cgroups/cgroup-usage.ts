// Reading a cgroup's resource usage: cumulative CPU time, memory (usage, working
// set, RSS, faults, limit), swap and process count, from v1 or cgroup2 files as
// the hierarchy says. A missing file reads as absent, never as zero usage.
// Every read is asynchronous (control-file-reader.ts): stats calls read these
// for every pod and container while the daemon serves, so none may hold the
// event loop.
import { join } from 'node:path';
import type { CgroupHierarchy } from './cgroup-hierarchy';
import { readControlFile, type ControlFileReader } from './control-file-reader';

export { readControlFile, type ControlFileReader } from './control-file-reader';

/** v1 reports "no limit" as the largest page-aligned signed 64-bit value; anything this large is unlimited. */
const UNLIMITED_THRESHOLD = 2 ** 60;

export interface CpuSample {
  /** Cumulative CPU time of every task in the cgroup, in nanoseconds. */
  usageCoreNanoSeconds: bigint;
}

export interface MemorySample {
  usageBytes: number;
  /** usage minus inactive file cache: what the kubelet evicts on. */
  workingSetBytes: number;
  rssBytes: number;
  pageFaults: number;
  majorPageFaults: number;
  /** undefined when unlimited. */
  limitBytes: number | undefined;
}

export interface SwapSample {
  usageBytes: number;
  /** undefined when unlimited or swap accounting is off. */
  limitBytes: number | undefined;
}

/** A reader that reads each file once however many figures of one sample need it. */
export function onceEach(read: ControlFileReader = readControlFile): ControlFileReader {
  const texts = new Map<string, Promise<string | undefined>>();
  return (file) => {
    let text = texts.get(file);
    if (!text) {
      text = read(file);
      texts.set(file, text);
    }
    return text;
  };
}

/** "key value" lines (memory.stat, cpu.stat) as a map. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^-?\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = text.trim();
  if (value === 'max' || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n < UNLIMITED_THRESHOLD ? n : undefined;
}

export async function readCpu(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<CpuSample | undefined> {
  if (hierarchy.isUnified('cpu')) {
    const dir = hierarchy.unifiedDir(path);
    const stat = await readText(join(dir, 'cpu.stat'));
    if (stat === undefined) return undefined;
    const match = /^usage_usec (\d+)$/m.exec(stat);
    return match ? { usageCoreNanoSeconds: BigInt(match[1]) * 1000n } : undefined;
  }
  const dir = hierarchy.dir(path, 'cpuacct');
  const usage = dir ? await readText(join(dir, 'cpuacct.usage')) : undefined;
  if (usage === undefined || !/^\d+$/.test(usage.trim())) return readUnifiedCpu(hierarchy, path, readText);
  return { usageCoreNanoSeconds: BigInt(usage.trim()) };
}

/**
 * On a hybrid host a cgroup may exist only on the cgroup2 side: systemd accounts CPU
 * there (cpu.stat needs no controller) and creates no cpuacct cgroup for its units.
 */
async function readUnifiedCpu(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader): Promise<CpuSample | undefined> {
  const dir = hierarchy.unifiedDir(path);
  const stat = dir ? await readText(join(dir, 'cpu.stat')) : undefined;
  const match = stat === undefined ? null : /^usage_usec (\d+)$/m.exec(stat);
  return match ? { usageCoreNanoSeconds: BigInt(match[1]) * 1000n } : undefined;
}

export async function readMemory(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<MemorySample | undefined> {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  if (hierarchy.isUnified('memory')) {
    const [current, statText, max] = await Promise.all(['memory.current', 'memory.stat', 'memory.max'].map((f) => readText(join(dir, f))));
    if (current === undefined || statText === undefined) return undefined;
    const stat = parseFlatKeyed(statText);
    const usageBytes = Number(current.trim());
    return {
      usageBytes,
      workingSetBytes: Math.max(0, usageBytes - (stat.get('inactive_file') ?? 0)),
      rssBytes: stat.get('anon') ?? 0,
      pageFaults: stat.get('pgfault') ?? 0,
      majorPageFaults: stat.get('pgmajfault') ?? 0,
      limitBytes: parseLimit(max),
    };
  }
  const [usage, statText, limit] = await Promise.all(['memory.usage_in_bytes', 'memory.stat', 'memory.limit_in_bytes'].map((f) => readText(join(dir, f))));
  if (usage === undefined || statText === undefined) return undefined;
  const stat = parseFlatKeyed(statText);
  const usageBytes = Number(usage.trim());
  // total_* include child cgroups: a pod's numbers must cover its containers.
  return {
    usageBytes,
    workingSetBytes: Math.max(0, usageBytes - (stat.get('total_inactive_file') ?? stat.get('inactive_file') ?? 0)),
    rssBytes: stat.get('total_rss') ?? stat.get('rss') ?? 0,
    pageFaults: stat.get('total_pgfault') ?? stat.get('pgfault') ?? 0,
    majorPageFaults: stat.get('total_pgmajfault') ?? stat.get('pgmajfault') ?? 0,
    limitBytes: parseLimit(limit),
  };
}

export async function readSwap(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<SwapSample | undefined> {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  if (hierarchy.isUnified('memory')) {
    const [current, max] = await Promise.all(['memory.swap.current', 'memory.swap.max'].map((f) => readText(join(dir, f))));
    if (current === undefined) return undefined;
    return { usageBytes: Number(current.trim()), limitBytes: parseLimit(max) };
  }
  // v1 accounts memory+swap together; swap alone is the difference.
  const files = ['memory.memsw.usage_in_bytes', 'memory.usage_in_bytes', 'memory.memsw.limit_in_bytes', 'memory.limit_in_bytes'];
  const [memsw, usage, memswLimitText, memLimitText] = await Promise.all(files.map((f) => readText(join(dir, f))));
  if (memsw === undefined || usage === undefined) return undefined;
  const memswLimit = parseLimit(memswLimitText);
  const memLimit = parseLimit(memLimitText);
  return {
    usageBytes: Math.max(0, Number(memsw.trim()) - Number(usage.trim())),
    limitBytes: memswLimit !== undefined && memLimit !== undefined ? Math.max(0, memswLimit - memLimit) : undefined,
  };
}

/** Tasks in the cgroup and its children: pids.current where the pids controller exists, else cgroup.procs. */
export async function readProcessCount(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<number | undefined> {
  const dir = hierarchy.dir(path, 'pids');
  const current = dir ? await readText(join(dir, 'pids.current')) : undefined;
  if (current !== undefined && /^\d+$/.test(current.trim())) return Number(current.trim());
  const procsDir = hierarchy.dir(path, 'memory') ?? hierarchy.allDirs(path)[0];
  const procs = procsDir ? await readText(join(procsDir, 'cgroup.procs')) : undefined;
  if (procs === undefined) return undefined;
  return procs.split('\n').filter(Boolean).length;
}

export interface CpuDetail {
  userNanoSeconds?: bigint;
  systemNanoSeconds?: bigint;
  periods?: number;
  throttledPeriods?: number;
  throttledNanoSeconds?: bigint;
}

/** User/system split and CFS throttling, for the cAdvisor-style metrics. */
export async function readCpuDetail(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<CpuDetail> {
  const out: CpuDetail = {};
  if (hierarchy.isUnified('cpu')) {
    const stat = await readText(join(hierarchy.unifiedDir(path), 'cpu.stat'));
    if (stat === undefined) return out;
    const values = parseFlatKeyed(stat);
    const usec = (key: string): bigint | undefined => (values.has(key) ? BigInt(values.get(key)!) * 1000n : undefined);
    out.userNanoSeconds = usec('user_usec');
    out.systemNanoSeconds = usec('system_usec');
    out.periods = values.get('nr_periods');
    out.throttledPeriods = values.get('nr_throttled');
    out.throttledNanoSeconds = usec('throttled_usec');
    return out;
  }
  const acct = hierarchy.dir(path, 'cpuacct');
  const [user, sys] = acct ? await Promise.all([readText(join(acct, 'cpuacct.usage_user')), readText(join(acct, 'cpuacct.usage_sys'))]) : [];
  if (user && /^\d+$/.test(user.trim())) out.userNanoSeconds = BigInt(user.trim());
  if (sys && /^\d+$/.test(sys.trim())) out.systemNanoSeconds = BigInt(sys.trim());
  const cpu = hierarchy.dir(path, 'cpu');
  const stat = cpu ? await readText(join(cpu, 'cpu.stat')) : undefined;
  if (stat !== undefined) {
    const values = parseFlatKeyed(stat);
    out.periods = values.get('nr_periods');
    out.throttledPeriods = values.get('nr_throttled');
    if (values.has('throttled_time')) out.throttledNanoSeconds = BigInt(values.get('throttled_time')!);
  }
  return out;
}

/** Times the OOM killer killed a task in the cgroup (undefined where the kernel does not say). */
export async function readOomKills(hierarchy: CgroupHierarchy, path: string, readText: ControlFileReader = readControlFile): Promise<number | undefined> {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  const text = await readText(join(dir, hierarchy.isUnified('memory') ? 'memory.events' : 'memory.oom_control'));
  return text === undefined ? undefined : parseFlatKeyed(text).get('oom_kill');
}

export interface PressureLine {
  /** Cumulative stall time in microseconds. */
  totalMicros: number;
  avg10: number;
  avg60: number;
  avg300: number;
}

export interface PressureSample {
  some: PressureLine;
  full: PressureLine | undefined;
}

/** "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" lines of a cgroup2 *.pressure file. */
export function parsePressure(text: string): PressureSample | undefined {
  const lines = new Map<string, PressureLine>();
  for (const line of text.split('\n')) {
    const [kind, ...pairs] = line.trim().split(/\s+/);
    if (kind !== 'some' && kind !== 'full') continue;
    const values = new Map(pairs.map((p) => p.split('=') as [string, string]));
    lines.set(kind, {
      totalMicros: Number(values.get('total') ?? 0),
      avg10: Number(values.get('avg10') ?? 0),
      avg60: Number(values.get('avg60') ?? 0),
      avg300: Number(values.get('avg300') ?? 0),
    });
  }
  const some = lines.get('some');
  return some ? { some, full: lines.get('full') } : undefined;
}

/**
 * Pressure stall information of the cgroup (cgroup2 only; on hybrid hosts runc also places
 * containers in the cgroup2 hierarchy, so its files are there too).
 */
export async function readPressure(
  hierarchy: CgroupHierarchy,
  path: string,
  resource: 'cpu' | 'memory' | 'io',
  readText: ControlFileReader = readControlFile,
): Promise<PressureSample | undefined> {
  const dir = hierarchy.unifiedDir(path);
  if (!dir) return undefined;
  const text = await readText(join(dir, `${resource}.pressure`));
  return text === undefined ? undefined : parsePressure(text);
}

/** Everything the stats RPCs and pod metrics report about one cgroup, read in one go. */
export interface CgroupUsageSample {
  cpu?: CpuSample & CpuDetail;
  memory?: MemorySample;
  oomKills?: number;
  swap?: SwapSample;
  processes?: number;
  pressure: { cpu?: PressureSample; memory?: PressureSample; io?: PressureSample };
}

/**
 * Reads every figure of a cgroup at once; files several figures share
 * (memory.usage_in_bytes, cpu.stat) are read once. `read` is where the caller
 * bounds how many reads are in flight.
 */
export async function readCgroupUsage(
  hierarchy: CgroupHierarchy,
  path: string,
  read: ControlFileReader = readControlFile,
  /** Also the user/system split, CFS throttling and OOM kills (pod metrics want them; the stats RPCs do not). */
  detail = true,
): Promise<CgroupUsageSample> {
  const text = onceEach(read);
  const [cpu, cpuDetail, memory, oomKills, swap, processes, cpuPressure, memoryPressure, ioPressure] = await Promise.all([
    readCpu(hierarchy, path, text),
    detail ? readCpuDetail(hierarchy, path, text) : {},
    readMemory(hierarchy, path, text),
    detail ? readOomKills(hierarchy, path, text) : undefined,
    readSwap(hierarchy, path, text),
    readProcessCount(hierarchy, path, text),
    readPressure(hierarchy, path, 'cpu', text),
    readPressure(hierarchy, path, 'memory', text),
    readPressure(hierarchy, path, 'io', text),
  ]);
  return {
    cpu: cpu ? { ...cpuDetail, ...cpu } : undefined,
    memory,
    oomKills,
    swap,
    processes,
    pressure: { cpu: cpuPressure, memory: memoryPressure, io: ioPressure },
  };
}
