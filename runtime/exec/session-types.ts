// What an interactive session (exec, attach, port-forward) needs from the
// streaming protocols, and what the protocols need from the runtime. The
// protocols (shim/streaming/) only see these interfaces, so they are tested
// against plain host processes and run against containers unchanged.
import { EventEmitter } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

export interface TerminalSize {
  width: number;
  height: number;
}

/** Terminal sizes as the client reports them; keeps the newest for a late listener. */
export class TerminalResizes extends EventEmitter<{ resize: [TerminalSize] }> {
  latest: TerminalSize | undefined;

  push(size: TerminalSize): void {
    if (!Number.isInteger(size.width) || !Number.isInteger(size.height) || size.width < 0 || size.height < 0) return;
    if (size.width > 0xffff || size.height > 0xffff) return;
    this.latest = size;
    this.emit('resize', size);
  }
}

/** The client's side of a session's stdio; null where the client did not ask for a stream. */
export interface SessionIo {
  stdin: Readable | null;
  stdout: Writable | null;
  stderr: Writable | null;
  tty: boolean;
  resizes: TerminalResizes | null;
}

/** The runtime as the streaming server sees it. */
export interface StreamingRuntime {
  /** Runs cmd in the container with io; resolves with its exit code. Aborting ends the process. */
  exec(containerId: string, cmd: string[], io: SessionIo, signal: AbortSignal): Promise<number>;
  /** Joins the running container's stdio until it exits or signal aborts (detach). */
  attach(containerId: string, io: SessionIo, signal: AbortSignal): Promise<void>;
  /** A TCP connection to 127.0.0.1:port inside the pod's network namespace. */
  portForward(podSandboxId: string, port: number): Promise<Duplex>;
}
