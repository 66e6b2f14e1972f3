// A connection's output: frames wait in one list and leave in one socket
// write, at the end of the batch of received bytes that caused them or on
// the next tick (nextTick runs after the promise callbacks that finish
// handlers), joined into one buffer when small and written with writev when
// large. Just before writing, the connection frames whatever flow control
// lets its streams send, so a message and the trailers after it go together.
import type { Socket } from 'node:net';

/** Pending output up to this size is joined into one buffer; more is written with writev. */
const JOIN_BELOW_BYTES = 64 * 1024;

export class SocketWriter {
  private out: Buffer[] = [];
  /** Octets queued and not yet handed to the socket. */
  queuedBytes = 0;
  private flushQueued = false;
  private flushing = false;
  private ending = false;
  private ended = false;
  /** flush, made once: scheduling it makes no closure per answer. */
  private readonly flushLater = (): void => this.flush();

  constructor(
    private readonly socket: Socket,
    /** Frames the streams' waiting data into the queue; called at the start of each flush. */
    private readonly beforeWrite: () => void,
  ) {}

  /** Octets the socket itself still holds unsent. */
  get socketBacklog(): number {
    return this.socket.writableLength;
  }

  queue(bytes: Buffer): void {
    this.out.push(bytes);
    this.queuedBytes += bytes.length;
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushQueued || this.ended) return;
    this.flushQueued = true;
    process.nextTick(this.flushLater);
  }

  /** Ends the socket once what is queued is written; destroys it if the peer does not close within a second. */
  endAfterFlush(): void {
    this.ending = true;
    this.flush();
  }

  /** Drops whatever is queued (the socket is gone). */
  discard(): void {
    this.out = [];
    this.queuedBytes = 0;
    this.ended = true;
  }

  flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    this.flushQueued = false;
    try {
      if (!this.ended) this.beforeWrite();
      this.write();
    } finally {
      this.flushing = false;
    }
    if (this.ending && !this.ended) {
      this.ended = true;
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
  }

  private write(): void {
    const out = this.out;
    if (out.length === 0) return;
    const bytes = this.queuedBytes;
    this.out = [];
    this.queuedBytes = 0;
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    if (out.length === 1) socket.write(out[0]);
    else if (bytes <= JOIN_BELOW_BYTES) socket.write(Buffer.concat(out, bytes));
    else {
      socket.cork();
      for (const part of out) socket.write(part);
      socket.uncork();
    }
  }
}
