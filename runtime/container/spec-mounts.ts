// A container's mounts: the kernel file systems, then the pod's files
// (/etc/hosts, resolv.conf, hostname, /dev/shm), then the request's bind
// mounts, shallow before deep, with the propagation the host mount allows.
import { readFileSync, realpathSync } from 'node:fs';
import { failedPrecondition, invalidArgument } from '../errors';
import type { ContainerSecurityContext, OciMount, SpecInput } from './oci-spec-types';

export interface SpecMounts {
  mounts: OciMount[];
  /** Set when a bind mount propagates (rslave/rshared): the rootfs must then not be private. */
  rootfsPropagation?: string;
}

/** The request's mounts were validated (container-request-validation.ts); what is checked here is the host's side. */
export function specMounts(input: SpecInput, sc: ContainerSecurityContext, privileged: boolean): SpecMounts {
  const { config, sandbox } = input;
  const requested = new Set((config.mounts ?? []).map((m) => m.container_path.replace(/\/+$/, '') || '/'));
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] },
  ];
  if (!requested.has('/dev/shm')) {
    if (sandbox.shmPath) mounts.push({ destination: '/dev/shm', type: 'bind', source: sandbox.shmPath, options: ['rbind', 'rprivate', 'rw'] });
    else mounts.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  }
  const podFiles: [string, string][] = [
    ['/etc/hosts', sandbox.hostsPath],
    ['/etc/resolv.conf', sandbox.resolvConfPath],
    ['/etc/hostname', sandbox.hostnamePath],
  ];
  for (const [destination, source] of podFiles) {
    if (!source || requested.has(destination)) continue;
    mounts.push({ destination, type: 'bind', source, options: ['rbind', 'rprivate', sc?.readonly_rootfs ? 'ro' : 'rw'] });
  }
  let rootfsPropagation: string | undefined;
  const mountInfoPath = input.mountInfoPath ?? '/proc/self/mountinfo';
  const userMounts = [...(config.mounts ?? [])].map((m, i) => ({ m, i }));
  userMounts.sort((a, b) => depth(a.m.container_path) - depth(b.m.container_path));
  for (const { m, i } of userMounts) {
    const field = `config.mounts[${i}]`;
    // A prepared mount (recursive read-only, idmapped, or an image volume) is bound as berthd made it.
    const source = input.preparedSources?.[i] || realHostPath(m.host_path, `${field}.host_path`);
    const options = ['rbind'];
    switch (m.propagation) {
      case 'PROPAGATION_HOST_TO_CONTAINER': {
        const p = hostPropagation(source, mountInfoPath);
        if (p === 'private') throw failedPrecondition(`${field}: "${m.host_path}" is on a private mount; host-to-container propagation needs a shared or slave mount`);
        options.push('rslave');
        if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
        break;
      }
      case 'PROPAGATION_BIDIRECTIONAL': {
        if (!privileged) throw invalidArgument(`${field}.propagation: bidirectional propagation needs a privileged container`);
        if (hostPropagation(source, mountInfoPath) !== 'shared') throw failedPrecondition(`${field}: "${m.host_path}" is not on a shared mount; bidirectional propagation needs one`);
        options.push('rshared');
        rootfsPropagation = 'rshared';
        break;
      }
      default:
        options.push('rprivate');
    }
    options.push(m.readonly || m.image?.image ? 'ro' : 'rw');
    mounts.push({ destination: m.container_path, type: 'bind', source, options });
  }
  return rootfsPropagation ? { mounts, rootfsPropagation } : { mounts };
}

function depth(path: string): number {
  return path.split('/').filter(Boolean).length;
}

interface MountInfoEntry {
  mountPoint: string;
  optional: string[];
}

function readMountInfo(path: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    out.push({ mountPoint: f[4].replace(/\\040/g, ' '), optional: f.slice(6, sep) });
  }
  return out;
}

/** Propagation of the mount holding `path` on the host: shared, slave or private. */
function hostPropagation(path: string, mountInfoPath: string): 'shared' | 'slave' | 'private' {
  let best: MountInfoEntry | undefined;
  for (const m of readMountInfo(mountInfoPath)) {
    const within = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (within && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  if (!best) return 'private';
  if (best.optional.some((o) => o.startsWith('shared:'))) return 'shared';
  if (best.optional.some((o) => o.startsWith('master:'))) return 'slave';
  return 'private';
}

function realHostPath(hostPath: string, field: string): string {
  try {
    // The CRI: a symlinked host path mounts the link's target.
    return realpathSync(hostPath);
  } catch {
    throw invalidArgument(`${field}: host path "${hostPath}" does not exist`);
  }
}
