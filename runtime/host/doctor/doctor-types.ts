// What a doctor check is and what it answers: one line per finding, ok / warn /
// fail, what was found, and the exact command or config that fixes it.
import type { BerthConfig } from '../../config';
import type { HostProbeCache } from '../host-probe-cache';
import type { HostRoot } from './host-root';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable id, e.g. "kernel.ip_forward". */
  id: string;
  status: CheckStatus;
  /** What was found, in one sentence. */
  found: string;
  /** The exact command or config that fixes it (warn and fail only). */
  fix?: string;
  /** berthd cannot run at all: at start this stops it. */
  fatal?: boolean;
}

export interface DoctorContext {
  host: HostRoot;
  config: BerthConfig;
  /** "start": berthd is starting (the socket is not served yet); "cli": `berthd doctor`. */
  phase: 'start' | 'cli';
  /** Programs' answers already known (berthd keeps them across restarts). */
  probes: HostProbeCache;
}

export type DoctorCheck = (ctx: DoctorContext) => Promise<CheckResult[]>;

export const ok = (id: string, found: string): CheckResult => ({ id, status: 'ok', found });
export const warn = (id: string, found: string, fix: string): CheckResult => ({ id, status: 'warn', found, fix });
export const fail = (id: string, found: string, fix: string, fatal = false): CheckResult => ({ id, status: 'fail', found, fix, ...(fatal ? { fatal } : {}) });

/** A sysctl made to stick: the command now and the file that keeps it after a reboot. */
export function sysctlFix(key: string, value: string): string {
  return `sysctl -w ${key}=${value} && echo '${key} = ${value}' >> /etc/sysctl.d/99-berth.conf`;
}

/** A kernel module loaded now and at every boot. */
export function moduleFix(name: string): string {
  return `modprobe ${name} && echo ${name} >> /etc/modules-load.d/berth.conf`;
}
