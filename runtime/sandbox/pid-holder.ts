// The process that holds a pod's shared PID namespace (NamespaceMode.POD):
// native/pause run with --new-pid-ns, which forks the holder into a new PID
// namespace and exits, so the holder is not berthd's child and outlives it.
// The pod id is on its command line so a crash between start and record, or a
// reused pid after a reboot, is recognised.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '../../native/run-command';
import { NATIVE_DIR, PAUSE_BINARY_NAME, type BerthNative, type NativeError } from '../../native';

const ESRCH = 3;

function pauseBinaryPath(): string {
  return join(NATIVE_DIR, 'build', 'Release', PAUSE_BINARY_NAME);
}

/** usernsPath: the pod's pinned user namespace, which the PID namespace is then made in ("" for the host's). */
export function startPidHolder(podId: string, usernsPath = ''): Promise<number> {
  const binary = pauseBinaryPath();
  if (!existsSync(binary)) return Promise.reject(new Error(`${binary} is missing; run "npm run build:native"`));
  const args = ['--new-pid-ns', podId, ...(usernsPath ? ['--userns', usernsPath] : [])];
  return runCommand(binary, args, { timeoutMs: 10_000 }).then(
    (result) => {
      const stdout = result.stdout.toString('utf8');
      if (result.code !== 0) throw new Error(`${PAUSE_BINARY_NAME}: ${result.stderr.toString('utf8').trim() || (result.signal ? `killed by ${result.signal}` : `exit status ${result.code}`)}`);
      const pid = Number(stdout.trim());
      if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${PAUSE_BINARY_NAME} printed no pid: ${JSON.stringify(stdout)}`);
      return pid;
    },
    (err: Error) => {
      throw new Error(`${PAUSE_BINARY_NAME}: ${err.message}`);
    },
  );
}

/** Whether `pid` is this pod's holder (and not a reused pid). */
export function isPidHolderOf(pid: number, podId: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && args.includes('--new-pid-ns') && args.includes(podId);
  } catch {
    return false;
  }
}

/** Holders of this pod found by scanning /proc (for a crash before the pid was recorded). */
export function findPidHolders(podId: string): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    if (isPidHolderOf(Number(entry), podId)) out.push(Number(entry));
  }
  return out;
}

/** Ends the holder (SIGKILL: nothing in it needs a grace period) and waits until it is gone. */
export async function stopPidHolder(pid: number, podId: string): Promise<void> {
  if (!isPidHolderOf(pid, podId)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw err;
  }
  for (let i = 0; i < 200 && isPidHolderOf(pid, podId); i++) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Calls onExit once when the pod's holder exits: a pidfd on the event loop
 * (native watchProcessExit), so a watch costs an fd, not a timer or a thread,
 * however many pods there are. A holder already gone, or a pid that is no
 * longer this pod's holder, is reported at once. Returns the cancel function.
 */
export function watchPidHolder(native: Pick<BerthNative, 'watchProcessExit' | 'unwatchProcessExit'>, pid: number, podId: string, onExit: () => void): () => void {
  let watchId = 0;
  try {
    watchId = native.watchProcessExit(pid, onExit);
  } catch (err) {
    if ((err as NativeError).errno !== ESRCH) throw err;
  }
  // Checked once the pidfd pins the process: a holder that is still ours now stays ours until it exits.
  if (watchId && isPidHolderOf(pid, podId)) return () => native.unwatchProcessExit(watchId);
  if (watchId) native.unwatchProcessExit(watchId);
  setImmediate(onExit);
  return () => undefined;
}
