// gRPC's message framing on an HTTP/2 stream: each message is a 1-byte
// compressed flag, a 4-byte big-endian length, then that many bytes. A
// message may arrive split over DATA frames, or several in one.

export const FRAME_HEADER_BYTES = 5;

/** A whole message as received: `compressed` when its flag byte was 1. */
export interface ReceivedMessage {
  compressed: boolean;
  bytes: Buffer;
}

/** The frame header of a message of `length` bytes. */
export function frameHeader(length: number, compressed = false): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header[0] = compressed ? 1 : 0;
  header.writeUInt32BE(length, 1);
  return header;
}

/** A message framed in one buffer (small messages: one write instead of two). */
export function framedMessage(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  bytes.copy(out, FRAME_HEADER_BYTES);
  return out;
}

export class MessageTooLarge extends Error {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`received a message of ${length} bytes, larger than the limit of ${limit}`);
  }
}

/**
 * Reassembles messages from the stream's chunks. A message whose declared
 * length is over `maxMessageBytes` is refused as soon as its header is read,
 * before any of it is buffered.
 */
export class MessageReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of the current message's body still to come (-1: reading a header). */
  private wanted = -1;
  private compressed = false;

  constructor(private readonly maxMessageBytes: number) {}

  /** True when the bytes seen end exactly at a message boundary. */
  get atBoundary(): boolean {
    return this.wanted === -1 && this.pendingBytes === 0;
  }

  /** Feeds a chunk; returns the messages it completed. Throws MessageTooLarge. */
  push(chunk: Buffer): ReceivedMessage[] {
    const done: ReceivedMessage[] = [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.wanted === -1) {
        if (this.pendingBytes < FRAME_HEADER_BYTES) return done;
        const header = this.take(FRAME_HEADER_BYTES);
        this.compressed = header[0] !== 0;
        const length = header.readUInt32BE(1);
        if (length > this.maxMessageBytes) throw new MessageTooLarge(length, this.maxMessageBytes);
        this.wanted = length;
      }
      if (this.pendingBytes < this.wanted) return done;
      done.push({ compressed: this.compressed, bytes: this.take(this.wanted) });
      this.wanted = -1;
    }
  }

  /** The first `n` pending bytes, as one buffer (a view when they sit in one chunk). */
  private take(n: number): Buffer {
    const first = this.pending[0];
    if (n === 0) return Buffer.alloc(0);
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const head = this.pending[0];
        const part = Math.min(head.length, n - at);
        head.copy(out, at, 0, part);
        at += part;
        if (part === head.length) this.pending.shift();
        else this.pending[0] = head.subarray(part);
      }
    }
    this.pendingBytes -= n;
    return out;
  }
}
