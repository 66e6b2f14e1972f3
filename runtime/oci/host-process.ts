// Host processes berth watches by pid (conmon, a container's init, an exec'd
// process): pid files, liveness, signals. Pids are reused, so callers that
// need to know *which* process a pid is check its command line too.
import { readFileSync } from 'node:fs';
import { loadNative, type BerthNative } from '../../native';
import { constants as osConstants } from 'node:os';

/** The pid in a pid file; undefined when the file is missing or holds no pid. */
export function tryReadPidFile(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True while `pid` runs (a zombie has exited and counts as gone). */
export function processAlive(pid: number): boolean {
  if (!pid) return false;
  try {
    return aliveInStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Whether /proc/<pid>/stat's text is of a process that has not exited (state is not Z). */
export function aliveInStat(stat: string): boolean {
  const close = stat.lastIndexOf(')');
  return close >= 0 && stat.slice(close + 2, close + 3) !== 'Z';
}

/** The argv of a live process; undefined when it is gone. */
export function processArgv(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** A child's exit status as a shell reports it: its code, or 128 + the signal that ended it. */
export function exitStatusOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? osConstants.signals[signal] : undefined;
  return typeof n === 'number' ? 128 + n : 255;
}

let nativeLoaded: BerthNative | null | undefined;

/** The addon's posix_spawn, when it is built (libuv's spawn forks berthd's whole heap on the event loop). */
export function nativeSpawner(): BerthNative | undefined {
  if (nativeLoaded === undefined) {
    try {
      const native = loadNative();
      nativeLoaded = typeof native.spawnDetached === 'function' ? native : null;
    } catch {
      nativeLoaded = null;
    }
  }
  return nativeLoaded ?? undefined;
}
