// Attach: join a running container's stdio through conmon's attach socket, a
// SOCK_SEQPACKET unix socket conmon serves in the bundle dir. Every packet
// conmon sends starts with one byte naming the pipe (2 stdout, 3 stderr); what
// the client sends is the container's stdin, raw. Shutting down the write side
// tells conmon stdin ended (it closes the container's stdin when the container
// was created with stdin_once). Resizes go through conmon's control fifo.
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { loadNative } from '../../native';
import { failedPrecondition } from '../errors';
import { FdStream } from './fd-stream';
import type { SessionIo, TerminalSize } from './session-types';

const PIPE_STDOUT = 2;
const PIPE_STDERR = 3;
const CTL_RESIZE = 1;

export interface AttachTarget {
  id: string;
  bundleDir: string;
  /** Whether the container was created with stdin open: otherwise the client's stdin is not wired. */
  stdin: boolean;
}

export function attachSocketPath(bundleDir: string): string {
  return join(bundleDir, 'attach');
}

function resizeThroughConmon(bundleDir: string, size: TerminalSize): void {
  let fd: number;
  try {
    // Non-blocking: a fifo nobody reads fails to open instead of hanging berthd.
    fd = openSync(join(bundleDir, 'ctl'), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return;
  }
  try {
    writeSync(fd, `${CTL_RESIZE} ${size.height} ${size.width}\n`);
  } catch {
    // conmon went away; the session ends with it
  } finally {
    closeSync(fd);
  }
}

/** Resolves when the container's output ends (it exited) or when signal aborts (the client detached). */
export async function conmonAttach(target: AttachTarget, io: SessionIo, signal: AbortSignal): Promise<void> {
  let fd: number;
  try {
    fd = loadNative().seqpacketConnect(attachSocketPath(target.bundleDir));
  } catch (err) {
    throw failedPrecondition(`container ${target.id} cannot be attached to: ${(err as Error).message}`);
  }
  const socket = new FdStream(fd, 'seqpacket');
  const onResize = (size: TerminalSize): void => resizeThroughConmon(target.bundleDir, size);
  try {
    await new Promise<void>((resolve) => {
      socket.on('data', (packet: Buffer) => {
        if (packet.length < 1) return;
        const body = packet.subarray(1);
        if (packet[0] === PIPE_STDOUT) io.stdout?.write(body);
        else if (packet[0] === PIPE_STDERR) (io.stderr ?? (io.tty ? io.stdout : null))?.write(body);
      });
      socket.once('end', () => resolve());
      socket.once('close', () => resolve());
      socket.once('error', () => resolve());
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
      if (io.stdin && target.stdin) {
        io.stdin.pipe(socket);
      }
      if (io.resizes) {
        if (io.resizes.latest) onResize(io.resizes.latest);
        io.resizes.on('resize', onResize);
      }
    });
  } finally {
    io.resizes?.off('resize', onResize);
    if (io.stdin) io.stdin.unpipe(socket);
    socket.destroy();
  }
}
