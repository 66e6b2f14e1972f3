// Attach: join a running container's stdio through conmon's attach socket, a
// SOCK_SEQPACKET unix socket conmon serves in the bundle dir. Every packet
// conmon sends starts with one byte naming the pipe (2 stdout, 3 stderr); what
// the client sends is the container's stdin, raw. Shutting down the write side
// tells conmon stdin ended (it closes the container's stdin when the container
// was created with stdin_once). Resizes go through conmon's control fifo. The
// socket's path and the fifo's protocol are conmon's (oci/conmon.ts).
import { loadNative } from '../../native';
import { describeError, failedPrecondition } from '../errors';
import { conmonFiles, resizeConmonTerminal } from '../oci/conmon';
import { FdStream } from './fd-stream';
import type { SessionIo, TerminalSize } from './session-types';

const PIPE_STDOUT = 2;
const PIPE_STDERR = 3;

export interface AttachTarget {
  id: string;
  bundleDir: string;
  /** Whether the container was created with stdin open: otherwise the client's stdin is not wired. */
  stdin: boolean;
}

/** Resolves when the container's output ends (it exited) or when signal aborts (the client detached). */
export async function conmonAttach(target: AttachTarget, io: SessionIo, signal: AbortSignal): Promise<void> {
  let fd: number;
  try {
    fd = loadNative().seqpacketConnect(conmonFiles.attachSocket(target.bundleDir));
  } catch (err) {
    throw failedPrecondition(`container ${target.id} cannot be attached to: ${describeError(err)}`);
  }
  const socket = new FdStream(fd, 'seqpacket');
  const onResize = (size: TerminalSize): void => {
    try {
      resizeConmonTerminal(target.bundleDir, size);
    } catch {
      // conmon went away: the container exited and the session ends with its output
    }
  };
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
