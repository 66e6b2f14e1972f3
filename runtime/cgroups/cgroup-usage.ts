// Reading a cgroup's resource usage: cumulative CPU time, memory (usage, working
// set, RSS, faults, limit), swap and process count, from v1 or cgroup2 files as
// the hierarchy says. A missing file reads as absent, never as zero usage.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupHierarchy } from './cgroup-hierarchy';

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

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
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

export function readCpu(hierarchy: CgroupHierarchy, path: string): CpuSample | undefined {
  if (hierarchy.isUnified('cpu')) {
    const dir = hierarchy.unifiedDir(path);
    const stat = readText(join(dir, 'cpu.stat'));
    if (stat === undefined) return undefined;
    const match = /^usage_usec (\d+)$/m.exec(stat);
    return match ? { usageCoreNanoSeconds: BigInt(match[1]) * 1000n } : undefined;
  }
  const dir = hierarchy.dir(path, 'cpuacct');
  const usage = dir ? readText(join(dir, 'cpuacct.usage')) : undefined;
  if (usage === undefined || !/^\d+$/.test(usage.trim())) return readUnifiedCpu(hierarchy, path);
  return { usageCoreNanoSeconds: BigInt(usage.trim()) };
}

/**
 * On a hybrid host a cgroup may exist only on the cgroup2 side: systemd accounts CPU
 * there (cpu.stat needs no controller) and creates no cpuacct cgroup for its units.
 */
function readUnifiedCpu(hierarchy: CgroupHierarchy, path: string): CpuSample | undefined {
  const dir = hierarchy.unifiedDir(path);
  const stat = dir ? readText(join(dir, 'cpu.stat')) : undefined;
  const match = stat === undefined ? null : /^usage_usec (\d+)$/m.exec(stat);
  return match ? { usageCoreNanoSeconds: BigInt(match[1]) * 1000n } : undefined;
}

export function readMemory(hierarchy: CgroupHierarchy, path: string): MemorySample | undefined {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  if (hierarchy.isUnified('memory')) {
    const current = readText(join(dir, 'memory.current'));
    const statText = readText(join(dir, 'memory.stat'));
    if (current === undefined || statText === undefined) return undefined;
    const stat = parseFlatKeyed(statText);
    const usageBytes = Number(current.trim());
    return {
      usageBytes,
      workingSetBytes: Math.max(0, usageBytes - (stat.get('inactive_file') ?? 0)),
      rssBytes: stat.get('anon') ?? 0,
      pageFaults: stat.get('pgfault') ?? 0,
      majorPageFaults: stat.get('pgmajfault') ?? 0,
      limitBytes: parseLimit(readText(join(dir, 'memory.max'))),
    };
  }
  const usage = readText(join(dir, 'memory.usage_in_bytes'));
  const statText = readText(join(dir, 'memory.stat'));
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
    limitBytes: parseLimit(readText(join(dir, 'memory.limit_in_bytes'))),
  };
}

export function readSwap(hierarchy: CgroupHierarchy, path: string): SwapSample | undefined {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  if (hierarchy.isUnified('memory')) {
    const current = readText(join(dir, 'memory.swap.current'));
    if (current === undefined) return undefined;
    return { usageBytes: Number(current.trim()), limitBytes: parseLimit(readText(join(dir, 'memory.swap.max'))) };
  }
  // v1 accounts memory+swap together; swap alone is the difference.
  const memsw = readText(join(dir, 'memory.memsw.usage_in_bytes'));
  const usage = readText(join(dir, 'memory.usage_in_bytes'));
  if (memsw === undefined || usage === undefined) return undefined;
  const memswLimit = parseLimit(readText(join(dir, 'memory.memsw.limit_in_bytes')));
  const memLimit = parseLimit(readText(join(dir, 'memory.limit_in_bytes')));
  return {
    usageBytes: Math.max(0, Number(memsw.trim()) - Number(usage.trim())),
    limitBytes: memswLimit !== undefined && memLimit !== undefined ? Math.max(0, memswLimit - memLimit) : undefined,
  };
}

/** Tasks in the cgroup and its children: pids.current where the pids controller exists, else cgroup.procs. */
export function readProcessCount(hierarchy: CgroupHierarchy, path: string): number | undefined {
  const dir = hierarchy.dir(path, 'pids');
  const current = dir ? readText(join(dir, 'pids.current')) : undefined;
  if (current !== undefined && /^\d+$/.test(current.trim())) return Number(current.trim());
  const procsDir = hierarchy.dir(path, 'memory') ?? hierarchy.allDirs(path)[0];
  const procs = procsDir ? readText(join(procsDir, 'cgroup.procs')) : undefined;
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
export function readCpuDetail(hierarchy: CgroupHierarchy, path: string): CpuDetail {
  const out: CpuDetail = {};
  if (hierarchy.isUnified('cpu')) {
    const stat = readText(join(hierarchy.unifiedDir(path), 'cpu.stat'));
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
  const user = acct ? readText(join(acct, 'cpuacct.usage_user')) : undefined;
  const sys = acct ? readText(join(acct, 'cpuacct.usage_sys')) : undefined;
  if (user && /^\d+$/.test(user.trim())) out.userNanoSeconds = BigInt(user.trim());
  if (sys && /^\d+$/.test(sys.trim())) out.systemNanoSeconds = BigInt(sys.trim());
  const cpu = hierarchy.dir(path, 'cpu');
  const stat = cpu ? readText(join(cpu, 'cpu.stat')) : undefined;
  if (stat !== undefined) {
    const values = parseFlatKeyed(stat);
    out.periods = values.get('nr_periods');
    out.throttledPeriods = values.get('nr_throttled');
    if (values.has('throttled_time')) out.throttledNanoSeconds = BigInt(values.get('throttled_time')!);
  }
  return out;
}

/** Times the OOM killer killed a task in the cgroup (undefined where the kernel does not say). */
export function readOomKills(hierarchy: CgroupHierarchy, path: string): number | undefined {
  const dir = hierarchy.dir(path, 'memory');
  if (!dir) return undefined;
  const text = readText(join(dir, hierarchy.isUnified('memory') ? 'memory.events' : 'memory.oom_control'));
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
export function readPressure(hierarchy: CgroupHierarchy, path: string, resource: 'cpu' | 'memory' | 'io'): PressureSample | undefined {
  const dir = hierarchy.unifiedDir(path);
  if (!dir) return undefined;
  const text = readText(join(dir, `${resource}.pressure`));
  return text === undefined ? undefined : parsePressure(text);
}
