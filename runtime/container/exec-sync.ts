// ExecSync, and the exec'd process every exec runs (ExecSync here, the
// interactive exec of the streaming server through execTarget): the
// container's own process with the command swapped in, run by the
// container's OCI runtime.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describeError, deadlineExceeded, failedPrecondition, internal } from '../errors';
import { exitStatusOf, killQuietly, nativeSpawner, tryReadPidFile } from '../oci/host-process';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import type { ExecTarget } from './container-types';
import { specOf, stateOf } from './container-view';
import { fitExecOutput } from './exec-output';
import { execProcess } from './process-spec';
import { waitForFile } from './wait-for-file';

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** How long a timed-out exec's pid file may take to appear, and its runtime to reap it once killed. */
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

export async function execSync(ctx: ContainerContext, idOrPrefix: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
  const record = runningRecord(ctx, idOrPrefix);
  const target = execTargetOf(ctx, record, cmd, false);
  const token = randomBytes(6).toString('hex');
  const processPath = join(record.dir, `exec-${token}.json`);
  const pidPath = join(record.dir, `exec-${token}.pid`);
  await writeFile(processPath, JSON.stringify(target.process));
  const max = ctx.config.container.exec_sync_max_output_bytes;
  const { runtime } = target;
  try {
    const child = startExec(runtime.path, runtime.execArgs(target.id, processPath, { pidFile: pidPath }));
    const out = capture(child.stdout, max);
    const err = capture(child.stderr, max);
    let timedOut = false;
    const closed = child.exitCode;
    const finished = closed.then(() => undefined, () => undefined);
    const timer =
      timeoutSeconds > 0
        ? setTimeout(() => {
            timedOut = true;
            void killTimedOutExec(pidPath, child.pid, finished);
          }, timeoutSeconds * 1000)
        : undefined;
    const exitCode = await runtime.timed('exec', () => closed);
    if (timer) clearTimeout(timer);
    if (timedOut) throw deadlineExceeded(`command ${JSON.stringify(cmd)} timed out after ${timeoutSeconds} s`);
    const fitted = fitExecOutput(Buffer.concat(out), Buffer.concat(err), ctx.config.grpc.max_send_message_bytes);
    if (fitted.cut.stdout || fitted.cut.stderr) {
      ctx.log.warn({ id: record.id, cmd, cutBytes: fitted.cut }, 'ExecSync: output truncated to fit grpc.max_send_message_bytes');
    }
    return { stdout: fitted.stdout, stderr: fitted.stderr, exitCode };
  } finally {
    await Promise.all([rm(processPath, { force: true }), rm(pidPath, { force: true })]);
  }
}

interface StartedExec {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** The runtime's exit status once it exited and its stdout and stderr were closed (128+n for signal n). */
  exitCode: Promise<number>;
}


/**
 * Starts `runtime exec` with posix_spawn (native addon) where it can: libuv's
 * spawn forks berthd, copying and tearing down the page tables of its whole
 * heap on the event loop, which at a kubelet's probe rate on a full node was
 * most of the time the loop was blocked. Output is read through non-blocking
 * pipe handles; the runtime is reaped once both pipes closed, so reaping holds
 * a pool thread only for the moment between its exit and its reaping.
 */
function startExec(path: string, args: string[]): StartedExec {
  const native = nativeSpawner();
  if (!native) return startExecWithLibuv(path, args);
  let spawned: { pid: number; fds: number[] };
  try {
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
    spawned = native.spawnDetached(path, [path, ...args], env, '', ['null', 'write', 'write']);
  } catch (err) {
    throw internal(`cannot run ${path} exec: ${describeError(err)}`, err);
  }
  const [, outFd, errFd] = spawned.fds;
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
  return { pid: spawned.pid, stdout, stderr, exitCode };
}

function startExecWithLibuv(path: string, args: string[]): StartedExec {
  const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exitCode = new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(internal(`cannot run ${path} exec: ${e.message}`, e)));
    child.once('close', (code, signal) => resolve(exitStatusOf(code, signal)));
  });
  return { pid: child.pid ?? 0, stdout: child.stdout!, stderr: child.stderr!, exitCode };
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
 * Kills a timed-out exec'd process by the pid `runtime exec` wrote, and
 * leaves `runtime exec` alive to reap it: killed itself first, it would
 * orphan the process to the container's init, which may never reap it
 * (a zombie `pgrep` still finds). `runtime exec` is killed only when the pid
 * never shows up or it does not finish after its process died.
 */
async function killTimedOutExec(pidPath: string, runtimePid: number, finished: Promise<void>): Promise<void> {
  if (await waitForFile(pidPath, PID_FILE_WAIT_MS, finished)) {
    const pid = tryReadPidFile(pidPath);
    if (pid) killQuietly(pid, 'SIGKILL');
  }
  let timer: NodeJS.Timeout | undefined;
  const reaped = await Promise.race([finished.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), REAP_WAIT_MS)))]);
  clearTimeout(timer);
  if (!reaped) killQuietly(runtimePid, 'SIGKILL');
}
