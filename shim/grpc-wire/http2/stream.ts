// One HTTP/2 stream as a server sees it (RFC 9113 section 5.1): what the
// client sent arrives through its listener; what the server answers is
// queued here and cut into frames by the connection as far as both
// flow-control windows and the peer's frame size allow. The answer's end
// (trailers, or END_STREAM on the last DATA frame) follows the last byte
// of data, never before it.

/** What a stream's user hears. */
export interface StreamListener {
  /** A DATA frame's payload (padding removed). */
  onData(chunk: Buffer): void;
  /** The client ended its side (END_STREAM). */
  onEnd(): void;
  /** The stream is over: answered, reset by the client, or its connection gone. Called once. */
  onClose(): void;
}

/** What a stream needs of its connection. */
export interface StreamOwner {
  sendHeaderBlock(stream: Http2ServerStream, block: Buffer, endStream: boolean): void;
  /** Headers, one DATA payload and trailers in one go; false (nothing sent) when they cannot all go now. */
  sendWhole(stream: Http2ServerStream, headers: Buffer, prefix: Buffer, body: Buffer, trailers: Buffer): boolean;
  /** The stream has data (or its end) queued: send what the windows allow. */
  pump(stream: Http2ServerStream): void;
  /** Sends RST_STREAM and forgets the stream. */
  resetStream(stream: Http2ServerStream, code: number): void;
}

/** Queued answer bytes over this make write() ask the writer to wait for 'drain'. */
const HIGH_WATER_BYTES = 64 * 1024;

const IGNORE: StreamListener = { onData: () => undefined, onEnd: () => undefined, onClose: () => undefined };

export class Http2ServerStream {
  listener: StreamListener = IGNORE;
  /** The client sent END_STREAM. */
  remoteEnded = false;
  /** We queued our END_STREAM: nothing more may be written. */
  localEnded = false;
  /** The stream is gone from its connection (both ends done, reset, or connection closed). */
  closed = false;
  /** Octets the client may still send us / we may still send it on this stream. */
  recvWindow: number;
  sendWindow: number;
  /** Received octets not yet given back with WINDOW_UPDATE. */
  recvUnacked = 0;
  /** Answer bytes queued and not yet framed. */
  queuedBytes = 0;
  /** The trailers that end the answer once the queue is empty (undefined with localEnded: END_STREAM on DATA). */
  trailers?: Buffer;
  private readonly queue: Buffer[] = [];
  private drainWaiters?: Array<() => void>;

  constructor(
    private readonly owner: StreamOwner,
    readonly id: number,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Sends a response header block; with `endStream` it is the whole answer. */
  respond(block: Buffer, endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    if (endStream) this.localEnded = true;
    this.owner.sendHeaderBlock(this, block, endStream);
  }

  /**
   * The whole answer at once: `headers`, one DATA payload (`prefix`, then `body`: copied before this returns) and
   * `trailers`, which end the stream. False, with nothing sent, when it cannot all go now (a window or the peer's
   * frame size holds it back, or something was sent on the stream already): then respond, write and end do it.
   */
  respondWhole(headers: Buffer, prefix: Buffer, body: Buffer, trailers: Buffer): boolean {
    if (this.closed || this.localEnded || this.queuedBytes > 0) return false;
    return this.owner.sendWhole(this, headers, prefix, body, trailers);
  }

  /** Queues answer bytes. False when the queue is over its mark: wait for drained() before writing more. */
  write(bytes: Buffer): boolean {
    if (this.closed || this.localEnded) return false;
    if (bytes.length > 0) {
      this.queue.push(bytes);
      this.queuedBytes += bytes.length;
      this.owner.pump(this);
    }
    return this.queuedBytes < HIGH_WATER_BYTES;
  }

  /** Ends the answer after the queued bytes: with a trailer block, or with END_STREAM on the last DATA frame. */
  end(trailers?: Buffer): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.trailers = trailers;
    this.owner.pump(this);
  }

  /** Resolves once the queue is under its mark again, or the stream is closed. */
  drained(): Promise<void> {
    if (this.closed || this.queuedBytes < HIGH_WATER_BYTES) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /** Abandons the stream with RST_STREAM `code`. */
  reset(code: number): void {
    if (!this.closed) this.owner.resetStream(this, code);
  }

  /** Up to `max` queued octets as one buffer: a view when they sit in one queued buffer, else one copy across several. */
  takeData(max: number): Buffer {
    const head = this.queue[0];
    let out: Buffer;
    if (head.length >= max) {
      out = head.length === max ? head : head.subarray(0, max);
      if (head.length === max) this.queue.shift();
      else this.queue[0] = head.subarray(max);
    } else if (this.queue.length === 1) {
      out = head;
      this.queue.length = 0;
    } else {
      out = Buffer.allocUnsafe(Math.min(max, this.queuedBytes));
      let at = 0;
      while (at < out.length) {
        const next = this.queue[0];
        const part = Math.min(next.length, out.length - at);
        next.copy(out, at, 0, part);
        at += part;
        if (part === next.length) this.queue.shift();
        else this.queue[0] = next.subarray(part);
      }
    }
    this.queuedBytes -= out.length;
    if (this.drainWaiters && this.queuedBytes < HIGH_WATER_BYTES) this.wakeDrainWaiters();
    return out;
  }

  /** Called by the connection once, when the stream leaves it. */
  markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.wakeDrainWaiters();
    this.listener.onClose();
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = undefined;
    if (waiters) for (const wake of waiters) wake();
  }
}
