// Memory of a runtime's processes as the kernel accounts it: PSS (each shared
// page divided among the processes mapping it) from /proc/PID/smaps_rollup,
// so a daemon and a hundred small helpers add up to what they really cost.
import { readFileSync, readdirSync } from 'node:fs';

/** PSS of one process in KiB; undefined when it is gone or unreadable. */
export function pssKiB(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Sum of PSS over `pids` in MiB (processes gone meanwhile count as nothing). */
export function totalPssMiB(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (pssKiB(pid) ?? 0), 0) / 1024;
}

export interface ProcessInfo {
  pid: number;
  /** /proc/PID/comm (the executable's name, at most 15 characters). */
  comm: string;
  args: string[];
  cgroupLines: string[];
}

/** Every process on the host, read once (the snapshot a selection runs on). */
export function listProcesses(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const cgroupLines = readFileSync(`/proc/${entry}/cgroup`, 'utf8').split('\n').filter(Boolean);
      out.push({ pid: Number(entry), comm, args, cgroupLines });
    } catch {
      // exited while listing
    }
  }
  return out;
}

/** berth's helpers: the conmon processes monitoring containers whose bundles live under berthd's root. */
export function berthHelperPids(processes: readonly ProcessInfo[], berthRoot: string): number[] {
  const prefix = `${berthRoot}/`;
  return processes.filter((p) => p.comm === 'conmon' && p.args.some((a) => a.startsWith(prefix))).map((p) => p.pid);
}

/** containerd's helpers: the shims it started, which name its socket as their -address. */
export function containerdHelperPids(processes: readonly ProcessInfo[], socket: string): number[] {
  return processes.filter((p) => p.comm.startsWith('containerd-shim') && p.args.includes(socket)).map((p) => p.pid);
}

/** Processes of the pods a runtime runs (in cgroups below `cgroupParent`), e.g. containerd's pause containers. */
export function podProcessPids(processes: readonly ProcessInfo[], cgroupParent: string, comm?: string): number[] {
  return processes
    .filter((p) => (comm === undefined || p.comm === comm) && p.cgroupLines.some((line) => line.split(':')[2]?.startsWith(`${cgroupParent}/`)))
    .map((p) => p.pid);
}
