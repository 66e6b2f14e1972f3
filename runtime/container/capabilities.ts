// Linux capabilities a container gets: the customary default set, edited by
// the CRI's add/drop lists (either may say "ALL"), names accepted with or
// without the CAP_ prefix as the kubelet passes them through from pod specs.
import { readFileSync } from 'node:fs';
import { invalidArgument } from '../errors';

/** Index = capability number (include/uapi/linux/capability.h). */
const CAPABILITY_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** A capability's number; undefined for a name this table does not know. */
export function capabilityNumber(name: string): number | undefined {
  const at = CAPABILITY_NAMES.indexOf(name);
  return at < 0 ? undefined : at;
}

export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

let lastCap: number | undefined;

/** Capabilities this kernel knows (runc refuses names past cap_last_cap). */
export function allCapabilities(): string[] {
  if (lastCap === undefined) {
    try {
      lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      lastCap = CAPABILITY_NAMES.length - 1;
    }
    if (!Number.isInteger(lastCap)) lastCap = CAPABILITY_NAMES.length - 1;
  }
  return CAPABILITY_NAMES.slice(0, Math.min(lastCap, CAPABILITY_NAMES.length - 1) + 1);
}

export function normaliseCapability(name: string, field: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return upper;
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!CAPABILITY_NAMES.includes(full)) throw invalidArgument(`${field}: unknown capability "${name}"`);
  return full;
}

let heldByBerthd: string[] | undefined;

/**
 * Capabilities berthd itself holds (bounding and effective sets of
 * /proc/self/status): runc can grant a container nothing beyond them, and
 * "unable to apply caps" is all it says when asked to. A root without
 * CAP_SYS_RESOURCE in its bounding set is common in nested containers.
 */
export function hostCapabilities(statusPath = '/proc/self/status'): string[] {
  if (statusPath === '/proc/self/status' && heldByBerthd) return heldByBerthd;
  const known = allCapabilities();
  let held = known;
  try {
    const status = readFileSync(statusPath, 'utf8');
    const mask = (field: string): bigint | undefined => {
      const m = new RegExp(`^${field}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
      return m ? BigInt(`0x${m[1]}`) : undefined;
    };
    const bounding = mask('CapBnd');
    const effective = mask('CapEff');
    if (bounding !== undefined && effective !== undefined) {
      const both = bounding & effective;
      held = known.filter((_name, bit) => ((both >> BigInt(bit)) & 1n) === 1n);
    }
  } catch {
    // no /proc: assume everything the kernel knows
  }
  if (statusPath === '/proc/self/status') heldByBerthd = held;
  return held;
}

export interface ContainerCapabilities {
  /** The bounding/effective/permitted set. */
  capabilities: string[];
  /** Ambient capabilities (a subset of `capabilities`). */
  ambient: string[];
  /** Capabilities the request named that berthd cannot grant, left out. */
  ungranted: string[];
}

/**
 * The container's capabilities. Privileged and "ALL" mean every capability
 * berthd holds (`held`), as containerd gives the current set; a capability
 * named explicitly that berthd does not hold is left out and reported, since
 * the runtime would otherwise refuse the whole container.
 */
export function containerCapabilities(
  add: string[],
  drop: string[],
  privileged: boolean,
  held: string[] = hostCapabilities(),
  addAmbient: string[] = [],
): ContainerCapabilities {
  const grantable = new Set(held);
  const known = allCapabilities().filter((c) => grantable.has(c));
  const ambientWanted = addAmbient.map((c) => normaliseCapability(c, 'linux.security_context.capabilities.add_ambient_capabilities')).filter((c) => c !== 'ALL');
  let caps: Set<string>;
  const ungranted = new Set<string>();
  if (privileged) {
    caps = new Set(known);
  } else {
    const adds = add.map((c) => normaliseCapability(c, 'linux.security_context.capabilities.add_capabilities'));
    const drops = drop.map((c) => normaliseCapability(c, 'linux.security_context.capabilities.drop_capabilities'));
    caps = new Set(DEFAULT_CAPABILITIES);
    if (adds.includes('ALL')) caps = new Set(known);
    if (drops.includes('ALL')) caps = new Set();
    for (const c of drops) caps.delete(c);
    for (const c of adds) {
      if (c === 'ALL') continue;
      if (grantable.has(c)) caps.add(c);
      else ungranted.add(c);
    }
  }
  const ambient: string[] = [];
  for (const c of ambientWanted) {
    if (!grantable.has(c)) ungranted.add(c);
    else {
      // An ambient capability must also be permitted.
      caps.add(c);
      ambient.push(c);
    }
  }
  return { capabilities: known.filter((c) => caps.has(c)), ambient: [...new Set(ambient)], ungranted: [...ungranted] };
}
