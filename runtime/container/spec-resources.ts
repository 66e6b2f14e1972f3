// A container's cgroup: its path under the pod's parent and the OCI
// LinuxResources made from the CRI's, at create and at UpdateContainerResources.
import { readdirSync } from 'node:fs';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { CgroupDriver } from '../config';
import { invalidArgument } from '../errors';
import type { HostFacts } from '../host/host-facts';
import { int64Field } from './cri-int64';
import type { OciResources } from './oci-spec-types';

let hugepageSizes: Set<string> | undefined;

/** The huge page sizes the kernel offers, as the CRI names them ("2MB", "1GB"); read once. */
function hostHugepageSizes(): Set<string> {
  if (hugepageSizes) return hugepageSizes;
  hugepageSizes = new Set();
  let entries: string[] = [];
  try {
    entries = readdirSync('/sys/kernel/mm/hugepages');
  } catch {
    // no huge pages on this kernel
  }
  for (const entry of entries) {
    const kb = /^hugepages-(\d+)kB$/.exec(entry)?.[1];
    if (!kb) continue;
    const n = Number(kb);
    hugepageSizes.add(n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)}GB` : n % 1024 === 0 ? `${n / 1024}MB` : `${n}KB`);
  }
  return hugepageSizes;
}

/** OCI LinuxResources from the CRI's; `prefix` names the request field in errors. */
export function ociResources(
  r: LinuxContainerResources__Output | null | undefined,
  host: Pick<HostFacts, 'cgroup'>,
  prefix = 'linux.resources',
): OciResources {
  const out: OciResources = {};
  if (!r) return out;
  const shares = int64Field(r.cpu_shares, `${prefix}.cpu_shares`, 0, 262144);
  const quota = int64Field(r.cpu_quota, `${prefix}.cpu_quota`, -1);
  const period = int64Field(r.cpu_period, `${prefix}.cpu_period`, 0, 1_000_000);
  const cpu: NonNullable<OciResources['cpu']> = {};
  if (shares > 0) cpu.shares = shares;
  if (quota !== 0) cpu.quota = quota;
  if (period > 0) cpu.period = period;
  if (r.cpuset_cpus) cpu.cpus = r.cpuset_cpus;
  if (r.cpuset_mems) cpu.mems = r.cpuset_mems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  const limit = int64Field(r.memory_limit_in_bytes, `${prefix}.memory_limit_in_bytes`, 0);
  const swap = int64Field(r.memory_swap_limit_in_bytes, `${prefix}.memory_swap_limit_in_bytes`, -1);
  if (limit > 0 || swap !== 0) {
    out.memory = {};
    if (limit > 0) out.memory.limit = limit;
    if (swap !== 0) out.memory.swap = swap;
  }
  const hugepages = (r.hugepage_limits ?? []).filter((h) => h.page_size);
  if (hugepages.length > 0) {
    out.hugepageLimits = hugepages.map((h, i) => {
      const field = `${prefix}.hugepage_limits[${i}]`;
      if (!hostHugepageSizes().has(h.page_size)) {
        throw invalidArgument(`${field}.page_size: "${h.page_size}" is not a huge page size of this host (${[...hostHugepageSizes()].join(', ') || 'none'})`);
      }
      return { pageSize: h.page_size, limit: int64Field(h.limit, `${field}.limit`, 0) };
    });
  }
  if (r.unified && Object.keys(r.unified).length > 0) {
    if (host.cgroup.mode !== 'v2') throw invalidArgument(`${prefix}.unified: this host's cgroups are ${host.cgroup.mode}; unified settings need cgroup v2`);
    out.unified = { ...r.unified };
  }
  return out;
}

/** The spec's cgroupsPath: "<slice>:berth:<id>" under systemd, a path under the pod's parent (or /berth) under cgroupfs. */
export function cgroupsPathFor(driver: CgroupDriver, parent: string, id: string): string {
  if (driver === 'systemd') return `${parent || 'system.slice'}:berth:${id}`;
  const base = parent ? (parent.startsWith('/') ? parent : `/${parent}`) : '/berth';
  return `${base.replace(/\/+$/, '')}/${id}`;
}
