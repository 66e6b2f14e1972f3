// SIGKILL to every process in a container's own cgroup, done by berth rather
// than the OCI runtime, for a container in a shared PID namespace (the pod's, a
// target's or the host's), where its init's death ends nothing else. runc 1.1's
// kill --all finds the processes through one cgroup (devices, on cgroup v1), and
// under the systemd driver in a nested systemd that one stays empty while the
// scope's pids, memory, cpu and cgroup2 cgroups hold them: it then signals
// nothing. berth reads cgroup.procs in every hierarchy instead, off the event
// loop, with each pid held as a pidfd and re-checked against the cgroup before
// it is signalled (native/src/cgroup_signal.cc), so a reused pid is never hit.
import { basename, dirname } from 'node:path';
import { constants } from 'node:os';
import { describeError } from '../errors';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';

/** Rounds of read-and-signal, for processes forked while a round ran. */
const MAX_KILL_ROUNDS = 8;

/**
 * The container's cgroup.procs files, only where the cgroup is the container's own: its leaf is the
 * container's id (cgroupfs) or berth-<id>.scope (systemd), never a pod's or a kubelet's parent.
 */
export function ownCgroupProcsFiles(files: string[], id: string): string[] {
  const own = new Set([id, `berth-${id}.scope`]);
  const strangers = files.filter((file) => basename(file) !== 'cgroup.procs' || !own.has(basename(dirname(file))));
  if (strangers.length) throw new Error(`not container ${id}'s own cgroup: ${strangers.join(', ')}`);
  return files;
}

/** SIGKILLs every process of the container's cgroup; how many were signalled (0 when it cannot look). */
export async function killCgroupProcesses(ctx: Pick<ContainerContext, 'cgroupProcsFiles' | 'native' | 'log'>, record: ContainerRecord): Promise<number> {
  if (!ctx.cgroupProcsFiles || !record.cgroupsPath) return 0;
  if (typeof ctx.native.signalCgroupProcesses !== 'function') {
    ctx.log.warn({ id: record.id }, 'the native addon predates signalCgroupProcesses (run npm run build:native): the container\'s cgroup is left to the OCI runtime\'s kill --all');
    return 0;
  }
  try {
    const files = ownCgroupProcsFiles(ctx.cgroupProcsFiles(record.cgroupsPath), record.id);
    const result = await ctx.native.signalCgroupProcesses(files, constants.signals.SIGKILL, MAX_KILL_ROUNDS);
    if (result.error || result.left.length) {
      ctx.log.warn({ id: record.id, error: result.error, left: result.left, rounds: result.rounds }, 'SIGKILL to the container\'s cgroup: some processes may not have been signalled');
    }
    ctx.log.debug({ id: record.id, pids: result.signalled, rounds: result.rounds }, 'SIGKILL to the processes in the container\'s cgroup');
    return result.signalled.length;
  } catch (err) {
    ctx.log.warn({ id: record.id, err: describeError(err) }, 'cannot SIGKILL the processes in the container\'s cgroup');
    return 0;
  }
}
