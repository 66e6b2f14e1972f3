// Interactive exec: `<runc|crun> --root <root> exec --process <spec> <id>`
// with the process every exec runs (the container's own with the command
// swapped in: container/process-spec.ts execProcess, as ExecSync runs it).
// Without a tty the runtime's stdio are pipes. With a tty the runtime gets a
// pty slave of ours as its stdio: it then allocates the container's terminal
// itself, copies between the two, and, on SIGWINCH, copies our terminal's size
// to the container's — so a resize is TIOCSWINSZ on our master plus SIGWINCH
// to the runtime. The runtime stays in the foreground, so its exit status is
// the command's (detached exec with --console-socket would leave the process
// orphaned with nobody to collect its status).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { loadNative } from '../../native';
import type { ExecTarget } from '../container/container-types';
import { exitStatusOf, killQuietly, tryReadPidFile } from '../oci/host-process';
import { FdStream } from './fd-stream';
import type { SessionIo, TerminalResizes, TerminalSize } from './session-types';

const INITIAL_SIZE_WAIT_MS = 250;

/** Resolves on the first resize, or after waitMs without one. */
function firstResize(resizes: TerminalResizes, waitMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      resizes.off('resize', done);
      resolve();
    };
    const timer = setTimeout(done, waitMs);
    resizes.on('resize', done);
  });
}

function waitExit(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(exitStatusOf(code, signal)));
  });
}

/** Resolves when the stream ended or closed, or after graceMs (a background child may keep it open). */
function drained(stream: Readable | null | undefined, graceMs: number): Promise<void> {
  if (!stream || stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    stream.once('end', done);
    stream.once('close', done);
  });
}

/** Runs `target` with the session's stdio; resolves with its exit status. Aborting kills the process. */
export async function runtimeExec(target: ExecTarget, io: SessionIo, signal: AbortSignal, workDir: string): Promise<number> {
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const name = `${target.id.slice(0, 12)}-${randomBytes(6).toString('hex')}`;
  const specFile = join(workDir, `${name}.json`);
  const pidFile = join(workDir, `${name}.pid`);
  // With a terminal, the container's terminal is made at the client's size
  // (consoleSize): a command that reads it at once (stty, a shell's line
  // editor) must not race the runtime's first resize.
  const writeProcess = (size?: TerminalSize): void => {
    const sized = size && size.width > 0 && size.height > 0 ? { ...target.process, consoleSize: { height: size.height, width: size.width } } : target.process;
    writeFileSync(specFile, JSON.stringify(sized));
  };
  const runtimePath = target.runtime.path;
  const args = target.runtime.execArgs(target.id, specFile, { pidFile, tty: io.tty });

  let child: ChildProcess | undefined;
  const killProcess = (): void => {
    const pid = tryReadPidFile(pidFile);
    if (pid) killQuietly(pid, 'SIGKILL');
    // Not started yet (no pid file): stopping the runtime stops the start.
    if (!pid && child && child.exitCode === null) child.kill('SIGKILL');
  };
  const onAbort = (): void => killProcess();
  signal.addEventListener('abort', onAbort);

  try {
    if (io.tty) return await execWithTerminal();
    return await execWithPipes();
  } finally {
    signal.removeEventListener('abort', onAbort);
    rmSync(specFile, { force: true });
    rmSync(pidFile, { force: true });
  }

  async function execWithPipes(): Promise<number> {
    writeProcess();
    child = spawn(runtimePath, args, {
      stdio: [io.stdin ? 'pipe' : 'ignore', io.stdout ? 'pipe' : 'ignore', io.stderr ? 'pipe' : 'ignore'],
    });
    const proc = child;
    if (signal.aborted) killProcess();
    if (io.stdin && proc.stdin) {
      proc.stdin.on('error', () => undefined);
      io.stdin.pipe(proc.stdin);
    }
    if (io.stdout && proc.stdout) proc.stdout.pipe(io.stdout, { end: false });
    if (io.stderr && proc.stderr) proc.stderr.pipe(io.stderr, { end: false });
    const code = await waitExit(proc);
    await Promise.all([drained(proc.stdout, 2000), drained(proc.stderr, 2000)]);
    if (io.stdin && proc.stdin) io.stdin.unpipe(proc.stdin);
    proc.stdout?.destroy();
    proc.stderr?.destroy();
    return code;
  }

  async function execWithTerminal(): Promise<number> {
    const native = loadNative();
    const pty = native.openPty();
    const setSize = (size: TerminalSize): void => {
      try {
        native.setWindowSize(pty.master, size.height, size.width);
      } catch {
        // the terminal is gone
      }
    };
    // Clients send the first size right after the streams open: give it a
    // moment to arrive, so the container's terminal is made at that size.
    if (io.resizes && !io.resizes.latest) await firstResize(io.resizes, INITIAL_SIZE_WAIT_MS);
    if (io.resizes?.latest) setSize(io.resizes.latest);
    writeProcess(io.resizes?.latest);
    try {
      child = spawn(runtimePath, args, { stdio: [pty.slave, pty.slave, pty.slave], detached: true });
    } finally {
      // The runtime holds the slave now; ours must go so the master reads EOF when it exits.
      native.closeFd(pty.slave);
    }
    const proc = child;
    const master = new FdStream(pty.master, 'pty');
    master.on('error', () => undefined);
    if (signal.aborted) killProcess();
    const onResize = (size: TerminalSize): void => {
      setSize(size);
      if (proc.exitCode === null) proc.kill('SIGWINCH');
    };
    io.resizes?.on('resize', onResize);
    // Once the container has written something the runtime is surely copying
    // and listening: repeat the latest size in case a resize beat it.
    master.once('data', () => {
      if (io.resizes?.latest) onResize(io.resizes.latest);
    });
    if (io.stdin) io.stdin.pipe(master, { end: false });
    if (io.stdout) master.pipe(io.stdout, { end: false });
    else master.resume();
    try {
      const code = await waitExit(proc);
      await drained(master, 2000);
      return code;
    } finally {
      io.resizes?.off('resize', onResize);
      if (io.stdin) io.stdin.unpipe(master);
      if (io.stdout) master.unpipe(io.stdout);
      master.destroy();
    }
  }
}
