// The systemd cgroup driver: pod cgroups are transient slices and the processes
// berth places itself go into transient scopes, all created and changed through
// systemd's manager, as runc's and CRI-O's systemd managers do (a cgroup under
// systemd's control is not written behind its back). Containers themselves get
// their scopes from runc (cgroupsPath "slice:berth:<id>", --systemd-cgroup).
// Where a unit's cgroup is, and so where its stats are read, is what systemd says.
import { join } from 'node:path';
import { invalidArgument } from '../errors';
import { DbusError } from './dbus-connection';
import type { CgroupHierarchy, PodCgroupResources } from './cgroup-hierarchy';
import { expandSlice } from './cgroup-layout';
import { property, SystemdManager, type SystemdManagerOptions, type UnitProperty } from './systemd-manager';

export interface UnitSettings {
  properties: UnitProperty[];
  /** Settings systemd cannot carry for this host, said so rather than dropped silently. */
  skipped: string[];
}

export interface ScopeOptions {
  /** Let the processes manage their own sub-cgroups (runc and conmon do). */
  delegate?: boolean;
  resources?: PodCgroupResources;
  tasksMax?: number;
  description?: string;
}

/** systemd takes the CPU quota per second in microseconds, in steps of 10 ms (runc rounds up the same way). */
export function cpuQuotaPerSecUSec(quota: number, period: number): bigint {
  let perSec = Math.floor((quota * 1_000_000) / period);
  if (perSec % 10_000 !== 0) perSec = (Math.floor(perSec / 10_000) + 1) * 10_000;
  return BigInt(perSec);
}

export function sliceOrScopeName(name: string, kind: 'slice' | 'scope'): string {
  if (!name.endsWith(`.${kind}`) || name.includes('/') || name.length > 255 || !/^[A-Za-z0-9:_.\\-]+$/.test(name)) {
    throw invalidArgument(`"${name}" is not a systemd ${kind} name`);
  }
  if (kind === 'slice') expandSlice(name);
  return name;
}

export class SystemdCgroups {
  private current: SystemdManager;
  private reconnecting: Promise<SystemdManager> | undefined;

  private constructor(
    manager: SystemdManager,
    readonly hierarchy: CgroupHierarchy,
    private readonly options: SystemdManagerOptions,
    /** Where systemd's root cgroup is in this process's view of the hierarchies ("/" on a node). */
    readonly systemdRoot: string,
  ) {
    this.current = manager;
  }

  static async connect(hierarchy: CgroupHierarchy, options: SystemdManagerOptions & { systemdRoot?: string } = {}): Promise<SystemdCgroups> {
    return new SystemdCgroups(await SystemdManager.connect(options), hierarchy, options, options.systemdRoot ?? '/');
  }

  get manager(): SystemdManager {
    return this.current;
  }

  /** The connection, made again when systemd dropped it (a daemon-reexec or a restart of the bus). */
  private async live(): Promise<SystemdManager> {
    if (!this.current.closed) return this.current;
    this.reconnecting ??= SystemdManager.connect(this.options).finally(() => (this.reconnecting = undefined));
    this.current = await this.reconnecting;
    return this.current;
  }

  close(): void {
    this.current.close();
  }

  /**
   * CRI resources as unit properties. On a cgroup v1 controller the legacy properties
   * (CPUShares, MemoryLimit) are exact where the cgroup2 ones would be converted back lossily.
   */
  unitSettings(resources: PodCgroupResources = {}, tasksMax?: number): UnitSettings {
    const out: UnitSettings = { properties: [], skipped: [] };
    const int = (field: string, value: string | number | undefined): number => {
      if (value === undefined || value === '') return 0;
      const n = Number(value);
      if (!Number.isSafeInteger(n)) throw invalidArgument(`${field}: "${value}" is not an integer`);
      return n;
    };
    const cpuV2 = this.hierarchy.isUnified('cpu');
    const memoryV2 = this.hierarchy.isUnified('memory');
    const shares = int('cpu_shares', resources.cpu_shares);
    if (shares > 0) {
      const clamped = Math.min(262144, Math.max(2, shares));
      out.properties.push(cpuV2 ? property('CPUWeight', 't', BigInt(1 + Math.floor(((clamped - 2) * 9999) / 262142))) : property('CPUShares', 't', BigInt(clamped)));
    }
    const quota = int('cpu_quota', resources.cpu_quota);
    const period = int('cpu_period', resources.cpu_period) || 100_000;
    if (quota > 0) {
      out.properties.push(property('CPUQuotaPeriodUSec', 't', BigInt(period)));
      out.properties.push(property('CPUQuotaPerSecUSec', 't', cpuQuotaPerSecUSec(quota, period)));
    } else if (quota < 0) {
      out.properties.push(property('CPUQuotaPerSecUSec', 't', 0xffffffffffffffffn));
    }
    const memory = int('memory_limit_in_bytes', resources.memory_limit_in_bytes);
    if (memory !== 0) {
      const limit = memory > 0 ? BigInt(memory) : 0xffffffffffffffffn;
      out.properties.push(property(memoryV2 ? 'MemoryMax' : 'MemoryLimit', 't', limit));
    }
    const swap = int('memory_swap_limit_in_bytes', resources.memory_swap_limit_in_bytes);
    if (swap !== 0) {
      if (memoryV2) {
        const swapOnly = swap < 0 || memory <= 0 ? 0xffffffffffffffffn : BigInt(Math.max(0, swap - memory));
        out.properties.push(property('MemorySwapMax', 't', swapOnly));
      } else {
        out.skipped.push(`memory_swap_limit_in_bytes=${swap} (systemd has no swap limit on cgroup v1)`);
      }
    }
    if (tasksMax !== undefined) out.properties.push(property('TasksMax', 't', tasksMax > 0 ? BigInt(tasksMax) : 0xffffffffffffffffn));
    if (resources.cpuset_cpus) out.skipped.push(`cpuset_cpus=${resources.cpuset_cpus} (not set through systemd by berth)`);
    if (resources.cpuset_mems) out.skipped.push(`cpuset_mems=${resources.cpuset_mems} (not set through systemd by berth)`);
    for (const h of resources.hugepage_limits ?? []) out.skipped.push(`hugepage_limits ${h.page_size}=${h.limit} (systemd has no hugetlb setting)`);
    for (const key of Object.keys(resources.unified ?? {})) out.skipped.push(`unified ${key} (not set through systemd by berth)`);
    return out;
  }

  /** Creates the slice (and, implicitly, its parents) with these resources; an existing slice gets them set. */
  async ensureSlice(slice: string, resources?: PodCgroupResources, tasksMax?: number): Promise<{ created: boolean; skipped: string[] }> {
    sliceOrScopeName(slice, 'slice');
    const settings = this.unitSettings(resources, tasksMax);
    const accounting = ['CPUAccounting', 'MemoryAccounting', 'TasksAccounting'].map((name) => property(name, 'b', true));
    try {
      await (await this.live()).startTransientUnit(slice, [property('Description', 's', `berth pod slice ${slice}`), ...accounting, ...settings.properties]);
      return { created: true, skipped: settings.skipped };
    } catch (err) {
      if (!(err instanceof DbusError && err.dbusName === 'org.freedesktop.systemd1.UnitExists')) throw err;
    }
    if (settings.properties.length) await (await this.live()).setUnitProperties(slice, settings.properties);
    return { created: false, skipped: settings.skipped };
  }

  /** Puts running processes into a new scope in the slice. */
  async startScope(scope: string, slice: string, pids: number[], options: ScopeOptions = {}): Promise<{ skipped: string[] }> {
    sliceOrScopeName(scope, 'scope');
    sliceOrScopeName(slice, 'slice');
    if (pids.length === 0 || pids.some((p) => !Number.isInteger(p) || p <= 0)) throw invalidArgument(`scope ${scope}: pids must be positive integers`);
    const settings = this.unitSettings(options.resources, options.tasksMax);
    const properties: UnitProperty[] = [
      property('Description', 's', options.description ?? `berth ${scope}`),
      property('Slice', 's', slice),
      property('PIDs', 'au', pids),
      // A scope must not be stopped by systemd's shutdown ordering before berth is done with it.
      property('DefaultDependencies', 'b', false),
      property('Delegate', 'b', options.delegate ?? false),
      ...['CPUAccounting', 'MemoryAccounting', 'TasksAccounting'].map((name) => property(name, 'b', true)),
      ...settings.properties,
    ];
    await (await this.live()).startTransientUnit(scope, properties);
    return { skipped: settings.skipped };
  }

  /** Changes a slice's or scope's resources live. */
  async applyResources(unit: string, resources: PodCgroupResources, tasksMax?: number): Promise<{ skipped: string[] }> {
    const settings = this.unitSettings(resources, tasksMax);
    if (settings.properties.length) await (await this.live()).setUnitProperties(unit, settings.properties);
    return { skipped: settings.skipped };
  }

  /** Whether systemd has the unit loaded (a kubelet's slice, or one berth made). */
  async exists(unit: string): Promise<boolean> {
    return (await (await this.live()).unitPath(unit)) !== undefined;
  }

  /** Stops the unit (its processes are killed) and so removes its cgroup; an unknown unit is already gone. */
  async remove(unit: string): Promise<void> {
    await (await this.live()).stopUnit(unit);
  }

  /**
   * The unit's cgroup as a path relative to the hierarchies this process sees, from what
   * systemd reports; undefined when systemd has no such unit.
   */
  async cgroupPath(unit: string): Promise<string | undefined> {
    const group = await (await this.live()).controlGroup(unit);
    if (group === undefined || group === '') return undefined;
    return join(this.systemdRoot, group);
  }
}
