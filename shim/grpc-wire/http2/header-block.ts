// Assembles a request's header block from a HEADERS frame and the
// CONTINUATION frames after it (RFC 9113 6.2, 6.10), removing padding and
// the priority fields. Nothing else may come between them on the
// connection, and the block's coded size is bounded while it accumulates.
import { ConnectionError, ErrorCode, Flag, FrameType, unpadded } from './frames';

export interface HeaderBlock {
  streamId: number;
  endStream: boolean;
  /** The HEADERS frame's priority fields made the stream depend on itself (a stream error). */
  selfDependent: boolean;
  block: Buffer;
}

export class HeaderBlockAssembler {
  private pending?: { streamId: number; endStream: boolean; selfDependent: boolean; fragments: Buffer[]; bytes: number };

  /** `maxBlockBytes`: a coded block is never much larger than the header list it codes, so more is abuse. */
  constructor(private readonly maxBlockBytes: number) {}

  /** Throws when a frame other than CONTINUATION arrives inside a block. */
  checkFrame(type: number): void {
    if (this.pending && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `a frame of type ${type} inside a header block (CONTINUATION expected)`);
  }

  /** A HEADERS frame: the whole block when it carries END_HEADERS, else undefined until the last CONTINUATION. */
  headers(flags: number, streamId: number, payload: Buffer): HeaderBlock | undefined {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let fragment = unpadded(flags, payload);
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'HEADERS too short for its priority fields');
      selfDependent = (fragment.readUInt32BE(0) & 0x7fffffff) === streamId;
      fragment = fragment.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return { streamId, endStream, selfDependent, block: fragment };
    this.pending = { streamId, endStream, selfDependent, fragments: [], bytes: 0 };
    this.add(fragment);
    return undefined;
  }

  continuation(flags: number, streamId: number, payload: Buffer): HeaderBlock | undefined {
    const pending = this.pending;
    if (!pending || pending.streamId !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `CONTINUATION on stream ${streamId} without a header block to continue`);
    this.add(payload);
    if (!(flags & Flag.END_HEADERS)) return undefined;
    this.pending = undefined;
    return { streamId, endStream: pending.endStream, selfDependent: pending.selfDependent, block: Buffer.concat(pending.fragments, pending.bytes) };
  }

  private add(fragment: Buffer): void {
    const pending = this.pending as NonNullable<typeof this.pending>;
    pending.bytes += fragment.length;
    if (pending.bytes > this.maxBlockBytes) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `a header block of more than ${this.maxBlockBytes} octets`);
    // A copy: the socket's chunk is not ours to hold across reads.
    pending.fragments.push(Buffer.from(fragment));
  }
}
