// Pod sysctls: which names a pod may set (only those its own namespaces scope)
// and where each one lives under /proc/sys. Names come dotted
// ("net.ipv4.ip_forward") or slashed ("net/ipv4/conf/eth0.100/forwarding",
// where the dot belongs to an interface name).
import { invalidArgument } from '../errors';

export type SysctlNamespace = 'net' | 'ipc' | 'uts';

const NAME = /^[A-Za-z0-9_]+([./][A-Za-z0-9_.-]+)*$/;
const IPC_PREFIXES = ['kernel.shmmax', 'kernel.shmall', 'kernel.shmmni', 'kernel.shm_rmid_forced', 'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'fs.mqueue.'];

/** The dotted form of a name given with slashes: segments joined by dots, their own dots becoming slashes (as sysctl(8) does). */
export function normalizeSysctlName(name: string): string {
  if (!name.includes('/')) return name;
  return name
    .split('/')
    .map((part) => part.replace(/\./g, '/'))
    .join('.');
}

/** The namespace that scopes the sysctl, or undefined when it is a host-wide one a pod may not set. */
export function sysctlNamespace(dottedName: string): SysctlNamespace | undefined {
  if (dottedName.startsWith('net.')) return 'net';
  if (IPC_PREFIXES.some((p) => dottedName === p || (p.endsWith('.') && dottedName.startsWith(p)))) return 'ipc';
  if (dottedName === 'kernel.hostname' || dottedName === 'kernel.domainname') return 'uts';
  return undefined;
}

/** /proc/sys path of a normalized name: dots are separators, slashes were dots inside a segment. */
export function sysctlProcPath(dottedName: string): string {
  return `/proc/sys/${dottedName.replace(/\./g, '\u0000').replace(/\//g, '.').replace(/\u0000/g, '/')}`;
}

export interface PodSysctl {
  name: string;
  namespace: SysctlNamespace;
  procPath: string;
  value: string;
}

/**
 * Validates every sysctl of a pod and resolves where it is written. A value may
 * not hold a newline or "=" (either could smuggle a second key past a line-based
 * writer), a name no "..", and host-wide sysctls are refused.
 */
export function resolvePodSysctls(sysctls: Record<string, string>, field = 'config.linux.sysctls'): PodSysctl[] {
  const out: PodSysctl[] = [];
  for (const [rawName, value] of Object.entries(sysctls)) {
    if (!NAME.test(rawName) || rawName.includes('..') || rawName.length > 256) {
      throw invalidArgument(`${field}: invalid sysctl name ${JSON.stringify(rawName)}`);
    }
    if (/[\n\r=\0]/.test(value) || value.length > 4096) {
      throw invalidArgument(`${field}[${JSON.stringify(rawName)}]: value ${JSON.stringify(value)} may not contain "=", a newline or NUL`);
    }
    if (value.trim() === '') throw invalidArgument(`${field}[${JSON.stringify(rawName)}]: empty value`);
    const name = normalizeSysctlName(rawName);
    const namespace = sysctlNamespace(name);
    if (!namespace) throw invalidArgument(`${field}: sysctl ${JSON.stringify(rawName)} is not namespaced; a pod may not set it`);
    out.push({ name, namespace, procPath: sysctlProcPath(name), value });
  }
  return out;
}
