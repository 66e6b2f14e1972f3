// What an ExecSync leaves behind. `runtime exec` copies the command's output
// through pipes of its own and exits only once nothing holds their write
// ends: a background child of the command (`sh -c "sleep 365d &"`) keeps
// them, and with them the answer, for as long as it lives. Such leftovers are
// found among the container's own processes (its cgroup) by the very pipes
// they hold, and killed: nobody can read their output any more, and a probe
// run every few seconds would pile them up. This holds whatever the
// container's PID namespace mode, since only this container's cgroup is
// searched and only holders of this exec's pipes match. A process that let
// go of the exec's output (redirected it, daemonized) is no leftover and is
// left alone.
import { readdir, readlink } from 'node:fs/promises';
import { loadNative, type NativeError } from '../../native';
import { killQuietly } from '../oci/host-process';

const ESRCH = 3;

/** Resolves once process `pid` has exited (a pidfd on the event loop; the process need not be berthd's child). */
export function processExited(pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      loadNative().watchProcessExit(pid, resolve);
    } catch (err) {
      if ((err as NativeError).errno === ESRCH) resolve();
      else reject(err);
    }
  });
}

/** What /proc shows for each fd of `pid` ("pipe:[123]", "socket:[45]", a path); [] once it is gone. */
async function fdTargets(pid: number): Promise<string[]> {
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return targets.filter(Boolean);
}

/** The pipes `pid` holds ("pipe:[123]"): those `runtime exec` reads the command's output from. */
export async function pipesHeldBy(pid: number): Promise<Set<string>> {
  return new Set((await fdTargets(pid)).filter((t) => t.startsWith('pipe:')));
}

/**
 * Kills (SIGKILL) the processes among `candidates` (the container's) that
 * hold one of `pipes`, the exec's output pipes; their pids.
 */
export async function killOutputHolders(pipes: ReadonlySet<string>, candidates: number[]): Promise<number[]> {
  if (pipes.size === 0) return [];
  const killed: number[] = [];
  for (const pid of candidates) {
    if ((await fdTargets(pid)).some((t) => pipes.has(t))) {
      killQuietly(pid, 'SIGKILL');
      killed.push(pid);
    }
  }
  return killed;
}
