// One cgroup path across every hierarchy of the host: which directory holds each
// controller's files, creating and removing the cgroup, and writing the CRI's
// LinuxContainerResources onto it (used for pod-level UpdatePodSandboxResources).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { CgroupDriver } from '../config';
import { internal, invalidArgument } from '../errors';
import type { CgroupFacts } from '../host/host-facts';
import { detectCgroupLayout, relativeCgroupPath, type CgroupLayout } from './cgroup-layout';

export type CgroupController = 'cpu' | 'cpuacct' | 'cpuset' | 'memory' | 'pids' | 'hugetlb' | 'blkio' | 'devices' | 'freezer';

/** CRI LinuxContainerResources as decoded (int64 as decimal strings); absent fields mean "not set". */
export type PodCgroupResources = Partial<LinuxContainerResources__Output>;

/** Outcome of applyResources: which files were written, and settings this host cannot take. */
export interface AppliedResources {
  written: string[];
  skipped: string[];
}

export class CgroupHierarchy {
  constructor(
    readonly layout: CgroupLayout,
    readonly driver: CgroupDriver = 'cgroupfs',
  ) {}

  /** facts: the host's cgroup mode as found at start (host-facts.ts), when known. */
  static detect(driver: CgroupDriver = 'cgroupfs', facts?: CgroupFacts): CgroupHierarchy {
    return new CgroupHierarchy(detectCgroupLayout(undefined, facts), driver);
  }

  get mode(): CgroupLayout['mode'] {
    return this.layout.mode;
  }

  relativePath(path: string): string {
    try {
      return relativeCgroupPath(path);
    } catch (err) {
      throw invalidArgument((err as Error).message);
    }
  }

  /** Whether a controller is served by the cgroup2 hierarchy (always on v2; on hybrid only the ones enabled there). */
  isUnified(controller: CgroupController): boolean {
    if (this.layout.mode === 'v2') return true;
    if (this.layout.mode === 'v1') return false;
    return !this.layout.v1Mounts[controller] && this.layout.v2Controllers.includes(controller);
  }

  /** Directory holding `controller`'s files for the cgroup; undefined when the host lacks that controller. */
  dir(path: string, controller: CgroupController): string | undefined {
    const rel = this.relativePath(path);
    if (this.isUnified(controller)) {
      if (!this.layout.v2Controllers.includes(controller) && this.layout.mode !== 'v2') return undefined;
      return join(this.layout.unifiedMount, rel);
    }
    const mount = this.layout.v1Mounts[controller];
    return mount ? join(mount, rel) : undefined;
  }

  /** The cgroup's directory in the cgroup2 hierarchy ("" on pure v1). */
  unifiedDir(path: string): string {
    return this.layout.unifiedMount ? join(this.layout.unifiedMount, this.relativePath(path)) : '';
  }

  /** Every directory the cgroup has, one per mounted hierarchy (deduplicated for co-mounted controllers). */
  allDirs(path: string): string[] {
    const rel = this.relativePath(path);
    const roots = new Set<string>(Object.values(this.layout.v1Mounts));
    if (this.layout.unifiedMount) roots.add(this.layout.unifiedMount);
    return [...roots].sort().map((root) => join(root, rel));
  }

  /** Creates the cgroup in every hierarchy; new v1 cpusets inherit their parent's cpus and mems so tasks can join. */
  ensure(path: string): void {
    const rel = this.relativePath(path);
    for (const dir of this.allDirs(path)) mkdirSync(dir, { recursive: true });
    if (this.layout.mode === 'v2') this.enableSubtreeControllers(rel);
    const cpusetMount = this.layout.v1Mounts.cpuset;
    if (cpusetMount) {
      let dir = cpusetMount;
      for (const part of rel.split('/').filter(Boolean)) {
        const parent = dir;
        dir = join(dir, part);
        for (const file of ['cpuset.cpus', 'cpuset.mems']) {
          if (readTrimmed(join(dir, file)) === '') writeControlFile(join(dir, file), readTrimmed(join(parent, file)));
        }
      }
    }
  }

  /**
   * On cgroup2 a child only gets a controller's files once every ancestor delegates it.
   * Not done on hybrid hosts: a controller enabled on the cgroup2 side there makes crun refuse to run.
   */
  private enableSubtreeControllers(rel: string): void {
    let dir = this.layout.unifiedMount;
    for (const part of rel.split('/').filter(Boolean)) {
      const offered = readTrimmed(join(dir, 'cgroup.controllers')).split(/\s+/).filter(Boolean);
      const enabled = new Set(readTrimmed(join(dir, 'cgroup.subtree_control')).split(/\s+/).filter(Boolean));
      const missing = offered.filter((c) => !enabled.has(c) && ['cpu', 'cpuset', 'memory', 'pids', 'io', 'hugetlb'].includes(c));
      if (missing.length) {
        try {
          writeFileSync(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
        } catch {
          // A cgroup holding processes cannot delegate (no internal processes rule); its children then lack those files.
        }
      }
      dir = join(dir, part);
    }
  }

  /**
   * Removes this one cgroup from every hierarchy; absent is fine. Never
   * recursive: a child cgroup is some other object's (a container's, another
   * pod's), so a cgroup that still has one is refused (EBUSY) rather than emptied.
   */
  remove(path: string): void {
    if (this.relativePath(path) === '/') throw invalidArgument('refusing to remove the root cgroup');
    const failures: string[] = [];
    const rel = this.relativePath(path);
    for (const dir of [...this.allDirs(path), ...this.layout.namedMounts.map((root) => join(root, rel))]) {
      try {
        rmdirSync(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        failures.push(code === 'EBUSY' ? `${dir} still holds processes or child cgroups` : `${dir}: ${(err as Error).message}`);
      }
    }
    if (failures.length) throw internal(`cannot remove cgroup ${path}: ${failures.join('; ')}`);
  }

  /** Moves a process into the cgroup in every hierarchy. */
  addProcess(path: string, pid: number): void {
    for (const dir of this.allDirs(path)) writeControlFile(join(dir, 'cgroup.procs'), String(pid));
  }

  /**
   * The cgroup's cgroup.procs file in every hierarchy, named (name=systemd) ones included: where a
   * process of it is listed depends on the driver (a nested systemd fills some controllers only).
   * Never the root cgroup's.
   */
  procsFiles(path: string): string[] {
    const rel = this.relativePath(path);
    if (rel === '/') throw invalidArgument('refusing to list the root cgroup\'s processes');
    const dirs = new Set([...this.allDirs(path), ...this.layout.namedMounts.map((root) => join(root, rel))]);
    return [...dirs].map((dir) => join(dir, 'cgroup.procs'));
  }

  /** Pids of the processes in the cgroup (not its children). */
  processes(path: string): number[] {
    const dir = this.dir(path, 'pids') ?? this.dir(path, 'memory') ?? this.allDirs(path)[0];
    const text = dir ? readTrimmed(join(dir, 'cgroup.procs')) : '';
    return text ? text.split('\n').map(Number) : [];
  }

  /**
   * Writes CRI LinuxContainerResources onto an existing or new cgroup: cpu shares, quota and
   * period, cpuset, memory (and swap) limit, hugepage limits and the cgroup2 "unified" map.
   * Zero/empty fields are left as they are, as the CRI means "not set".
   */
  applyResources(path: string, resources: PodCgroupResources): AppliedResources {
    this.ensure(path);
    const out: AppliedResources = { written: [], skipped: [] };
    const write = (controller: CgroupController, v1File: string, v2File: string, value: string): void => {
      const dir = this.dir(path, controller);
      const file = this.isUnified(controller) ? v2File : v1File;
      if (!dir || !existsSync(join(dir, file))) {
        out.skipped.push(`${file}=${value} (no ${controller} controller for ${path})`);
        return;
      }
      writeControlFile(join(dir, file), value);
      out.written.push(join(dir, file));
    };

    const shares = int64(resources.cpu_shares);
    if (shares > 0) {
      write('cpu', 'cpu.shares', 'cpu.weight', this.isUnified('cpu') ? String(sharesToWeight(shares)) : String(shares));
    }
    const period = int64(resources.cpu_period);
    const quota = int64(resources.cpu_quota);
    if (this.isUnified('cpu')) {
      if (period > 0 || quota !== 0) {
        write('cpu', '', 'cpu.max', `${quota > 0 ? quota : 'max'} ${period > 0 ? period : 100000}`);
      }
    } else {
      if (period > 0) write('cpu', 'cpu.cfs_period_us', '', String(period));
      if (quota !== 0) write('cpu', 'cpu.cfs_quota_us', '', String(quota > 0 ? quota : -1));
    }
    if (resources.cpuset_cpus) write('cpuset', 'cpuset.cpus', 'cpuset.cpus', resources.cpuset_cpus);
    if (resources.cpuset_mems) write('cpuset', 'cpuset.mems', 'cpuset.mems', resources.cpuset_mems);

    this.applyMemory(path, int64(resources.memory_limit_in_bytes), int64(resources.memory_swap_limit_in_bytes), write);

    for (const hugepage of resources.hugepage_limits ?? []) {
      if (!/^\d+[KMG]B$/.test(hugepage.page_size)) throw invalidArgument(`hugepage_limits.page_size: "${hugepage.page_size}" is not like "2MB"`);
      write('hugetlb', `hugetlb.${hugepage.page_size}.limit_in_bytes`, `hugetlb.${hugepage.page_size}.max`, String(hugepage.limit));
    }

    const unified = Object.entries(resources.unified ?? {});
    if (unified.length) {
      const dir = this.unifiedDir(path);
      if (!dir) throw invalidArgument('unified: cgroup2 settings given but this host has no cgroup2 hierarchy');
      for (const [key, value] of unified) {
        if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/i.test(key) || key.startsWith('cgroup.')) throw invalidArgument(`unified: "${key}" is not a controller file`);
        if (!existsSync(join(dir, key))) {
          out.skipped.push(`${key}=${value} (not offered in ${dir})`);
          continue;
        }
        writeControlFile(join(dir, key), value);
        out.written.push(join(dir, key));
      }
    }
    return out;
  }

  private applyMemory(
    path: string,
    limit: number,
    swapLimit: number,
    write: (controller: CgroupController, v1File: string, v2File: string, value: string) => void,
  ): void {
    if (this.isUnified('memory')) {
      if (limit !== 0) write('memory', '', 'memory.max', limit > 0 ? String(limit) : 'max');
      if (swapLimit !== 0 && existsSync(join(this.dir(path, 'memory') ?? '/nonexistent', 'memory.swap.max'))) {
        // cgroup2 limits swap alone; the CRI value is memory+swap, as on v1.
        const swapOnly = swapLimit < 0 || limit <= 0 ? 'max' : String(Math.max(0, swapLimit - limit));
        write('memory', '', 'memory.swap.max', swapOnly);
      }
      return;
    }
    const dir = this.dir(path, 'memory');
    const memsw = dir ? join(dir, 'memory.memsw.limit_in_bytes') : '';
    const steps: Array<() => void> = [];
    if (limit !== 0) steps.push(() => write('memory', 'memory.limit_in_bytes', '', String(limit > 0 ? limit : -1)));
    if (swapLimit !== 0 && memsw && existsSync(memsw)) steps.push(() => write('memory', 'memory.memsw.limit_in_bytes', '', String(swapLimit > 0 ? swapLimit : -1)));
    try {
      for (const step of steps) step();
    } catch (err) {
      // memory.limit must stay <= memsw.limit: when raising both, memsw has to go first.
      if (steps.length < 2) throw err;
      for (const step of [...steps].reverse()) step();
    }
  }
}

function int64(value: string | number | undefined): number {
  if (value === undefined || value === '') return 0;
  const n = Number(value);
  if (!Number.isFinite(n)) throw invalidArgument(`"${value}" is not an integer`);
  return n;
}

/** The mapping runc and the kubelet use from cgroup v1 cpu.shares (2..262144) to cgroup2 cpu.weight (1..10000). */
export function sharesToWeight(shares: number): number {
  const clamped = Math.min(262144, Math.max(2, shares));
  return 1 + Math.floor(((clamped - 2) * 9999) / 262142);
}

export function readTrimmed(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function writeControlFile(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EINVAL' || code === 'ERANGE') throw invalidArgument(`${file}: the kernel rejected "${value}" (${code})`);
    throw internal(`cannot write "${value}" to ${file}: ${(err as Error).message}`, err);
  }
}
