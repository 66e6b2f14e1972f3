// ExecSync, and the exec'd process every exec runs (ExecSync here, the
// interactive exec of the streaming server through execTarget): the
// container's own process with the command swapped in, run by the
// container's OCI runtime, or for ExecSync by berth-exec where it can
// (direct-exec.ts).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describeError, deadlineExceeded, failedPrecondition, internal } from '../errors';
import { EXEC_HELPER_NAME, type BerthNative } from '../../native';
import { exitStatusOf, killQuietly, nativeSpawner, tryReadPidFile } from '../oci/host-process';
import type { OciProcess, OciRuntime } from '../oci/oci-runtime';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import type { ExecTarget } from './container-types';
import { specOf, stateOf } from './container-view';
import { directExecPossible, directExecRequest, execHelperFd, HELPER_PATH, PID_OUT_CHILD_FD, readInitFacts, type InitFacts } from './direct-exec';
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
  const { runtime } = target;
  const deadline = timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : Infinity;
  const spec = specOf(record);
  const init = spec && directExecPossible(runtime, spec, target.process) ? await initFactsOf(record, runtime) : undefined;
  const direct = spec && init ? directExecRequest(spec, target.process, init) : undefined;
  const helped = direct ? await startDirectExec(direct) : undefined;
  if (helped) {
    ctx.log.debug({ id: record.id }, 'ExecSync through berth-exec');
    return finishExec(ctx, record, cmd, helped, deadline, timeoutSeconds);
  }
  const token = randomBytes(6).toString('hex');
  const processPath = join(record.dir, `exec-${token}.json`);
  const pidPath = join(record.dir, `exec-${token}.pid`);
  try {
    const child = await startRuntimeExec(runtime.path, runtime.execArgs(target.id, processPath, { pidFile: pidPath }), processPath, target.process, pidPath, deadline);
    return await finishExec(ctx, record, cmd, child, deadline, timeoutSeconds);
  } finally {
    await Promise.all([rm(processPath, { force: true }), rm(pidPath, { force: true })]);
  }
}

/**
 * The init's pid, start time and cgroups, read from runc's state once per running container:
 * they cannot change while its init runs (a restore starts another, with another start time).
 * Not read again per probe, a read that would queue behind stats reads in the thread pool.
 */
const initFactsCache = new WeakMap<ContainerRecord, { pid: number; startedAt: string; facts: InitFacts }>();

async function initFactsOf(record: ContainerRecord, runtime: OciRuntime): Promise<InitFacts | undefined> {
  const cached = initFactsCache.get(record);
  if (cached && cached.pid === record.pid && cached.startedAt === record.startedAt) return cached.facts;
  const { pid, startedAt } = record;
  const facts = await readInitFacts(runtime, record.id);
  if (facts && record.phase === 'running' && record.pid === pid && record.startedAt === startedAt) initFactsCache.set(record, { pid, startedAt, facts });
  return facts;
}

/** Waits for the command and its output (see execSync) and answers. */
async function finishExec(ctx: ContainerContext, record: ContainerRecord, cmd: string[], child: StartedExec, deadline: number, timeoutSeconds: number): Promise<ExecSyncResult> {
  const max = ctx.config.container.exec_sync_max_output_bytes;
  const out = capture(child.stdout, max);
  const err = capture(child.stderr, max);
  // `runtime exec` copies the command's output through pipes of its own and exits, with the
  // command's status, only once nothing holds them: the command's own exit comes first.
  const runtimeExit = child.exitCode;
  const runtime = ctx.runtimes.require(record.runtimeHandler);
  const ended = await runtime.timed('exec', () => settledBy(child.commandExited, deadline));
  if (ended === PASSED) {
    await endTimedOutExec(ctx, record, child);
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
  /** Settles once the exec'd command itself has exited (or its starter is gone without it). */
  commandExited: Promise<void>;
  /** The command's host pid once known, within `waitMs`; undefined when it never started or has exited. */
  commandPid(waitMs: number): Promise<number | undefined>;
  /** The pipes the command writes its output into ("pipe:[inode]"): what a leftover holds. */
  outputPipes(): Promise<Set<string>>;
}

/**
 * Starts `runtime exec` with posix_spawn (native addon) where it can: libuv's
 * spawn forks berthd, copying and tearing down the page tables of its whole
 * heap on the event loop, which at a kubelet's probe rate on a full node was
 * most of the time the loop was blocked. Output is read through non-blocking
 * pipe handles; the runtime is reaped once both pipes closed, through a pidfd
 * on the event loop. The spawn itself runs on a pool thread (vfork waits there
 * for the exec). The command's pid comes from the runtime's pid file.
 */
async function startRuntimeExec(path: string, args: string[], processPath: string, processSpec: OciProcess, pidPath: string, deadline: number): Promise<StartedExec> {
  await writeFile(processPath, JSON.stringify(processSpec));
  const native = nativeSpawner();
  let started: Omit<StartedExec, 'commandExited' | 'commandPid'>;
  if (!native) {
    started = startExecWithLibuv(path, args);
  } else {
    let spawned: { pid: number; fds: number[] };
    try {
      const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
      spawned = await native.spawnDetached(path, [path, ...args], env, '', ['null', 'write', 'write']);
    } catch (err) {
      throw internal(`cannot run ${path} exec: ${describeError(err)}`, err);
    }
    started = startedOf(native, spawned, false);
  }
  const runtimeGone = started.exitCode.then(() => undefined, () => undefined);
  return {
    ...started,
    commandExited: commandExit(pidPath, started.exitCode, deadline),
    commandPid: async (waitMs) => ((await waitForFile(pidPath, waitMs, runtimeGone)) ? tryReadPidFile(pidPath) : undefined),
  };
}

/**
 * berth-exec from its sealed copy, its request written on its fd 3; undefined when the helper is
 * not built. It waits for the command and exits with its status, so its own exit (a pidfd on the
 * event loop) is the command's; the command's pid comes on a pipe (PID_OUT_CHILD_FD). Besides the
 * spawn, nothing of an exec goes through the thread pool, where it would queue behind stats reads.
 */
async function startDirectExec(request: Buffer): Promise<StartedExec | undefined> {
  const native = nativeSpawner();
  const helper = native ? execHelperFd(native) : undefined;
  if (!native || helper === undefined) return undefined;
  let spawned: { pid: number; fds: number[]; written: number[] };
  try {
    const childFds: ('null' | 'read' | 'write' | number)[] = ['null', 'write', 'write', 'read', helper, 'write'];
    if (childFds.length !== PID_OUT_CHILD_FD + 1) throw new Error('the pid pipe is not the last child fd');
    // The request goes into its pipe before berth-exec starts, so it never waits for this loop to write it.
    spawned = await native.spawnDetached(HELPER_PATH, [EXEC_HELPER_NAME], [], '', childFds, [undefined, undefined, undefined, request]);
  } catch (err) {
    throw internal(`cannot run ${EXEC_HELPER_NAME}: ${describeError(err)}`, err);
  }
  if (spawned.fds[3] >= 0) {
    // A request larger than the pipe holds: the rest from here.
    const requestPipe = new Socket({ fd: spawned.fds[3], readable: false, writable: true });
    requestPipe.on('error', () => undefined);
    requestPipe.end(request.subarray(spawned.written[3] ?? 0));
  }
  const pidText = readAllText(new Socket({ fd: spawned.fds[PID_OUT_CHILD_FD], readable: true, writable: false }));
  let exited = false;
  const commandExited = processExited(spawned.pid).then(
    () => void (exited = true),
    () => void (exited = true),
  );
  const commandPid = async (waitMs: number): Promise<number | undefined> => {
    const text = await settledBy(pidText, Date.now() + waitMs);
    const pid = text === PASSED ? 0 : Number(text);
    // Once berth-exec exited it has reaped the command: that pid may be another process's by now.
    return Number.isInteger(pid) && pid > 0 && !exited ? pid : undefined;
  };
  return { ...startedOf(native, spawned, true), commandExited, commandPid };
}

/** Everything a stream yields, as text, once it closed (a read error ends it like its end). */
function readAllText(stream: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.setEncoding('latin1');
    stream.on('data', (chunk: string) => {
      if (text.length < 64) text += chunk;
    });
    stream.on('error', () => undefined);
    stream.once('close', () => resolve(text));
  });
}

/**
 * passedThrough: the command writes into berthd's pipes itself (berth-exec hands them on), so
 * those are what a leftover holds; `runtime exec` copies from pipes of its own instead.
 */
function startedOf(native: BerthNative, spawned: { pid: number; fds: number[] }, passedThrough: boolean): Omit<StartedExec, 'commandExited' | 'commandPid'> {
  const [, outFd, errFd] = spawned.fds;
  // Taken now, while berthd's ends are certainly open: an fstat of its own fd, no trip to the pool.
  const ownPipes = passedThrough ? new Set([outFd, errFd].map(pipeName).filter((name) => name !== '')) : undefined;
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
  const outputPipes = async (): Promise<Set<string>> => ownPipes ?? pipesHeldBy(spawned.pid);
  return { pid: spawned.pid, stdout, stderr, exitCode, outputPipes };
}

/** How /proc names the pipe behind one of berthd's fds ("pipe:[inode]"), "" when it is none. */
function pipeName(fd: number): string {
  try {
    const stat = fstatSync(fd);
    return stat.isFIFO() ? `pipe:[${stat.ino}]` : '';
  } catch {
    return '';
  }
}

function startExecWithLibuv(path: string, args: string[]): Omit<StartedExec, 'commandExited' | 'commandPid'> {
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
 * Ends a timed-out exec: its command by its pid, then what it left holding
 * its output, and lets `runtime exec` (or berth-exec) reap the command:
 * killed itself first, it would orphan the command to the container's init,
 * which may never reap it (a zombie `pgrep` still finds). The runtime is
 * killed only when it does not exit after that.
 */
async function endTimedOutExec(ctx: ContainerContext, record: ContainerRecord, child: StartedExec): Promise<void> {
  const runtimeGone = child.exitCode.then(() => undefined, () => undefined);
  const pid = await child.commandPid(PID_FILE_WAIT_MS);
  if (pid) killQuietly(pid, 'SIGKILL');
  await killLeftovers(ctx, record, child);
  if ((await settledBy(runtimeGone, Date.now() + REAP_WAIT_MS)) === PASSED) killQuietly(child.pid, 'SIGKILL');
}
