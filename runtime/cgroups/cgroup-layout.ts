// Where each cgroup controller lives on this host, and how a cgroup parent or a
// container's cgroup path (cgroupfs or systemd form) becomes a path relative to
// every hierarchy's root. Pure functions over the mount table so the v1, v2 and
// hybrid cases can be tested on any machine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroups, type CgroupFacts, type CgroupMode } from '../host/host-facts';

export interface CgroupLayout {
  mode: CgroupMode;
  /** Mount point of the cgroup2 hierarchy ("" on pure v1). */
  unifiedMount: string;
  /** v1 controller name → its mount point (co-mounted controllers share one). */
  v1Mounts: Record<string, string>;
  /** Controllers the cgroup2 root offers (v2 and hybrid). */
  v2Controllers: string[];
  /** v1 hierarchies with no controller (name=systemd): runc makes every cgroup there too, so removal must look there. */
  namedMounts: string[];
}

/** Builds the layout from the mode detection in host-facts and the mount table. */
export function cgroupLayoutFrom(facts: CgroupFacts, mountsText: string): CgroupLayout {
  const v1Mounts: Record<string, string> = {};
  const namedMounts: string[] = [];
  if (facts.mode !== 'v2') {
    for (const line of mountsText.split('\n')) {
      const [, mountPoint, fsType, options] = line.split(' ');
      if (fsType !== 'cgroup' || !mountPoint) continue;
      for (const option of options.split(',')) {
        if (facts.v1Controllers.includes(option) && !v1Mounts[option]) v1Mounts[option] = mountPoint;
        if (option.startsWith('name=') && !namedMounts.includes(mountPoint)) namedMounts.push(mountPoint);
      }
    }
  }
  return { mode: facts.mode, unifiedMount: facts.unifiedMount, v1Mounts, v2Controllers: [...facts.v2Controllers], namedMounts };
}

/** facts: the mode detection already made (berthd's host facts), with the cgroup lines of the mount table it read. */
export function detectCgroupLayout(root = '/sys/fs/cgroup', facts: CgroupFacts = detectCgroups(root)): CgroupLayout {
  return cgroupLayoutFrom(facts, facts.cgroupMountLines ?? readFileSync('/proc/self/mounts', 'utf8'));
}

/**
 * "kubepods-burstable-pod12.slice" → "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice":
 * systemd nests a slice under the slices named by each dash-separated prefix.
 */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice') || slice.includes('/')) throw new Error(`"${slice}" is not a systemd slice name`);
  const stem = slice.slice(0, -'.slice'.length);
  if (stem === '' || stem === '-') return '/';
  if (stem.startsWith('-') || stem.endsWith('-') || stem.includes('--')) throw new Error(`"${slice}" is not a valid slice name`);
  const parts = stem.split('-');
  let path = '';
  let prefix = '';
  for (const part of parts) {
    prefix = prefix ? `${prefix}-${part}` : part;
    path += `/${prefix}.slice`;
  }
  return path;
}

/**
 * A cgroup path as a path relative to each hierarchy root. Accepts:
 * - a cgroupfs path ("/berth/pod1/c1", leading slash optional),
 * - a systemd slice name ("kubepods-besteffort-pod1.slice"),
 * - runc's systemd triple "slice:prefix:name" (a scope "prefix-name.scope" in the slice).
 */
export function relativeCgroupPath(path: string): string {
  if (path === '' || path === '/') return '/';
  const triple = path.split(':');
  if (triple.length === 3) {
    const [slice, prefix, name] = triple;
    const parent = expandSlice(slice || '-.slice');
    const leaf = name.endsWith('.slice') ? name : `${prefix ? `${prefix}-` : ''}${name}.scope`;
    return join(parent, leaf);
  }
  if (!path.includes('/') && path.endsWith('.slice')) return expandSlice(path);
  if (path.split('/').includes('..')) throw new Error(`cgroup path "${path}" escapes the hierarchy`);
  return join('/', path);
}
