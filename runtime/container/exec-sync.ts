// ExecSync, and the exec'd process every exec runs (ExecSync here, the
// interactive exec of the streaming server through execTarget): the
// container's own process with the command swapped in, run by the
// container's OCI runtime, or for ExecSync by berth-exec where it can
// (direct-exec.ts).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readlink, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describeError, deadlineExceeded, failedPrecondition, internal } from '../errors';
import { EXEC_HELPER_NAME, type BerthNative } from '../../native';
import { exitStatusOf, killQuietly, nativeSpawner, tryReadPidFile } from '../oci/host-process';
import type { OciProcess } from '../oci/oci-runtime';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import type { ExecTarget } from './container-types';
import { specOf, stateOf } from './container-view';
import { directExecRequest, execHelperFd, HELPER_PATH } from './direct-exec';
import { killOutputHolders, pipesHeldBy, processExited } from './exec-leftovers';
import { fitExecOutput } from './exec-output';
import { execProcess } from './process-spec';
import { waitForFile } from './wait-for-file';

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** How long a timed-out exec's pid file may take to appear, and its runtime to exit once its command and leftovers were killed. */
const PID_FILE_WAIT_MS = 2_000;
const REAP_WAIT_MS = 5_000;

/** The running container by id or prefix, refreshed; FAILED_PRECONDITION when it does not run. */
export function runningRecord(ctx: ContainerContext, idOrPrefix: string): ContainerRecord {
  const record = ctx.exits.refresh(ctx.records.require(idOrPrefix));
  if (record.phase !== 'running') throw failedPrecondition(`container ${record.id} is not running (${stateOf(record)})`);
  return record;
}

/** What `cmd` runs as in the running container `idOrPrefix`, and the runtime that runs it. */
export function execTarget(ctx: ContainerContext, idOrPrefix: string, cmd: string[], tty: boolean): ExecTarget {
  return execTargetOf(ctx, runningRecord(ctx, idOrPrefix), cmd, tty);
}

function execTargetOf(ctx: ContainerContext, record: ContainerRecord, cmd: string[], tty: boolean): ExecTarget {
  const spec = specOf(record);
  if (!spec) throw internal(`container ${record.id} runs without a recorded OCI spec`);
  return { id: record.id, runtime: ctx.runtimes.require(record.runtimeHandler), process: execProcess(spec.process, cmd, tty) };
}

/**
 * Runs `cmd` in the container and answers with its exit code and output.
 * The call's timeout bounds the whole call. Once the command has exited, its
 * output may take at most container.drain_exec_sync_io_timeout_ms more (a
 * background child can hold it open for a year); then the processes holding
 * it are killed (exec-leftovers.ts) and the answer is the command's exit code
 * with its output.
 */
export async function execSync(ctx: ContainerContext, idOrPrefix: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
  const record = runningRecord(ctx, idOrPrefix);
  const target = execTargetOf(ctx, record, cmd, false);
  const token = randomBytes(6).toString('hex');
  const processPath = join(record.dir, `exec-${token}.json`);
  const pidPath = join(record.dir, `exec-${token}.pid`);
  const max = ctx.config.container.exec_sync_max_output_bytes;
  const { runtime } = target;
  const deadline = timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : Infinity;
  const spec = specOf(record);
  const direct = spec ? await directExecRequest(runtime, target.id, spec, target.process, pidPath) : undefined;
  try {
    const helped = direct ? await startDirectExec(direct) : undefined;
    if (helped) ctx.log.debug({ id: record.id }, 'ExecSync through berth-exec');
    const child = helped ?? (await startRuntimeExec(runtime.path, runtime.execArgs(target.id, processPath, { pidFile: pidPath }), processPath, target.process));
    const out = capture(child.stdout, max);
    const err = capture(child.stderr, max);
    // `runtime exec` copies the command's output through pipes of its own and exits, with the
    // command's status, only once nothing holds them: the command's own exit comes first.
    const runtimeExit = child.exitCode;
    const ended = await runtime.timed('exec', () => settledBy(commandExit(pidPath, runtimeExit, deadline), deadline));
    if (ended === PASSED) {
      await endTimedOutExec(ctx, record, pidPath, child, runtimeExit);
      throw deadlineExceeded(`command ${JSON.stringify(cmd)} timed out after ${timeoutSeconds} s`);
    }
    const drainMs = ctx.config.container.drain_exec_sync_io_timeout_ms;
    let exitCode = await settledBy(runtimeExit, Math.min(deadline, drainMs > 0 ? Date.now() + drainMs : Infinity));
    if (exitCode === PASSED) {
      const killed = await killLeftovers(ctx, record, child);
      exitCode = await settledBy(runtimeExit, Date.now() + REAP_WAIT_MS);
      ctx.log.warn({ id: record.id, cmd, killed }, 'ExecSync: the command exited but left processes holding its output; they were killed');
      if (exitCode === PASSED) {
        killQuietly(child.pid, 'SIGKILL');
        throw internal(`command ${JSON.stringify(cmd)} exited, but its output could not be drained: processes berth could not end still hold it`);
      }
    }
    const fitted = fitExecOutput(Buffer.concat(out), Buffer.concat(err), ctx.config.grpc.max_send_message_bytes);
    if (fitted.cut.stdout || fitted.cut.stderr) {
      ctx.log.warn({ id: record.id, cmd, cutBytes: fitted.cut }, 'ExecSync: output truncated to fit grpc.max_send_message_bytes');
    }
    return { stdout: fitted.stdout, stderr: fitted.stderr, exitCode };
  } finally {
    await Promise.all([rm(processPath, { force: true }), rm(pidPath, { force: true })]);
  }
}

/** Settles once the exec'd command itself has exited (its pid from `runtime exec`'s pid file), or `runtime exec` has. */
async function commandExit(pidPath: string, runtimeExit: Promise<number>, deadline: number): Promise<void> {
  const runtimeGone = runtimeExit.then(() => undefined, () => undefined);
  if (!(await waitForFile(pidPath, Math.min(deadline - Date.now(), LONGEST_TIMER_MS), runtimeGone))) return runtimeGone;
  const pid = tryReadPidFile(pidPath);
  if (!pid) return runtimeGone;
  await Promise.race([processExited(pid), runtimeGone]);
}

const PASSED = Symbol('deadline passed');
/** setTimeout's longest delay. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** What `promise` settles with, or PASSED once `deadline` (ms since the epoch; Infinity: none) comes first. */
async function settledBy<T>(promise: Promise<T>, deadline: number): Promise<T | typeof PASSED> {
  if (deadline === Infinity) return promise;
  let timer: NodeJS.Timeout | undefined;
  const passed = new Promise<typeof PASSED>((resolve) => (timer = setTimeout(() => resolve(PASSED), Math.min(LONGEST_TIMER_MS, Math.max(0, deadline - Date.now())))));
  try {
    return await Promise.race([promise, passed]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kills the container's processes that hold this exec's output (see exec-leftovers.ts); their pids. */
async function killLeftovers(ctx: ContainerContext, record: ContainerRecord, child: StartedExec): Promise<number[]> {
  if (!ctx.cgroupProcesses || !record.cgroupsPath || !child.pid) return [];
  try {
    return await killOutputHolders(await child.outputPipes(), ctx.cgroupProcesses(record.cgroupsPath));
  } catch (err) {
    ctx.log.warn({ id: record.id, err: describeError(err) }, 'ExecSync: cannot look for the processes it left behind');
    return [];
  }
}

interface StartedExec {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** The runtime's exit status once it exited and its stdout and stderr were closed (128+n for signal n). */
  exitCode: Promise<number>;
  /** The pipes the command writes its output into ("pipe:[inode]"): what a leftover holds. */
  outputPipes(): Promise<Set<string>>;
}


/**
 * Starts `runtime exec` with posix_spawn (native addon) where it can: libuv's
 * spawn forks berthd, copying and tearing down the page tables of its whole
 * heap on the event loop, which at a kubelet's probe rate on a full node was
 * most of the time the loop was blocked. Output is read through non-blocking
 * pipe handles; the runtime is reaped once both pipes closed, so reaping holds
 * a pool thread only for the moment between its exit and its reaping. The
 * spawn itself runs on a pool thread too (vfork waits there for the exec).
 */
async function startRuntimeExec(path: string, args: string[], processPath: string, processSpec: OciProcess): Promise<StartedExec> {
  await writeFile(processPath, JSON.stringify(processSpec));
  const native = nativeSpawner();
  if (!native) return startExecWithLibuv(path, args);
  let spawned: { pid: number; fds: number[] };
  try {
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
    spawned = await native.spawnDetached(path, [path, ...args], env, '', ['null', 'write', 'write']);
  } catch (err) {
    throw internal(`cannot run ${path} exec: ${describeError(err)}`, err);
  }
  return startedOf(native, spawned, false);
}

/** berth-exec from its sealed copy, its request written on its fd 3; undefined when the helper is not built. */
async function startDirectExec(request: Buffer): Promise<StartedExec | undefined> {
  const native = nativeSpawner();
  const helper = native ? execHelperFd(native) : undefined;
  if (!native || helper === undefined) return undefined;
  let spawned: { pid: number; fds: number[] };
  try {
    spawned = await native.spawnDetached(HELPER_PATH, [EXEC_HELPER_NAME], [], '', ['null', 'write', 'write', 'read', helper]);
  } catch (err) {
    throw internal(`cannot run ${EXEC_HELPER_NAME}: ${describeError(err)}`, err);
  }
  const requestPipe = new Socket({ fd: spawned.fds[3], readable: false, writable: true });
  requestPipe.on('error', () => undefined);
  requestPipe.end(request);
  return startedOf(native, spawned, true);
}

/**
 * passedThrough: the command writes into berthd's pipes itself (berth-exec hands them on), so
 * those are what a leftover holds; `runtime exec` copies from pipes of its own instead.
 */
function startedOf(native: BerthNative, spawned: { pid: number; fds: number[] }, passedThrough: boolean): StartedExec {
  const [, outFd, errFd] = spawned.fds;
  // Read now, while berthd's ends are certainly open.
  const ownPipes = passedThrough ? Promise.all([outFd, errFd].map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => ''))) : undefined;
  const stdout = new Socket({ fd: outFd, readable: true, writable: false });
  const stderr = new Socket({ fd: errFd, readable: true, writable: false });
  const closedStream = (stream: Socket): Promise<void> =>
    new Promise((resolve) => {
      // A read error ends the stream like its end does; the exit status still comes from the reaping.
      stream.on('error', () => undefined);
      stream.once('close', () => resolve());
    });
  const exitCode = Promise.all([closedStream(stdout), closedStream(stderr)])
    .then(() => native.waitChild(spawned.pid))
    .then(({ code, signal }) => (code !== null ? code : signal !== null ? 128 + signal : 255));
  const outputPipes = async (): Promise<Set<string>> => (ownPipes ? new Set((await ownPipes).filter((t) => t.startsWith('pipe:'))) : pipesHeldBy(spawned.pid));
  return { pid: spawned.pid, stdout, stderr, exitCode, outputPipes };
}

function startExecWithLibuv(path: string, args: string[]): StartedExec {
  const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exitCode = new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(internal(`cannot run ${path} exec: ${e.message}`, e)));
    child.once('close', (code, signal) => resolve(exitStatusOf(code, signal)));
  });
  return { pid: child.pid ?? 0, stdout: child.stdout!, stderr: child.stderr!, exitCode, outputPipes: () => pipesHeldBy(child.pid ?? 0) };
}

/** The first `max` bytes of a stream, as chunks filled in while it flows. */
function capture(stream: Readable | null, max: number): Buffer[] {
  const chunks: Buffer[] = [];
  let size = 0;
  stream?.on('data', (b: Buffer) => {
    if (size >= max) return;
    const take = b.subarray(0, max - size);
    chunks.push(take);
    size += take.length;
  });
  return chunks;
}

/**
 * Ends a timed-out exec: its command by the pid `runtime exec` wrote, then
 * what it left holding its output, and lets `runtime exec` reap the command:
 * killed itself first, it would orphan the command to the container's init,
 * which may never reap it (a zombie `pgrep` still finds). `runtime exec` is
 * killed only when it does not exit after that.
 */
async function endTimedOutExec(ctx: ContainerContext, record: ContainerRecord, pidPath: string, child: StartedExec, runtimeExit: Promise<number>): Promise<void> {
  const runtimeGone = runtimeExit.then(() => undefined, () => undefined);
  if (await waitForFile(pidPath, PID_FILE_WAIT_MS, runtimeGone)) {
    const pid = tryReadPidFile(pidPath);
    if (pid) killQuietly(pid, 'SIGKILL');
  }
  await killLeftovers(ctx, record, child);
  if ((await settledBy(runtimeGone, Date.now() + REAP_WAIT_MS)) === PASSED) killQuietly(child.pid, 'SIGKILL');
}
