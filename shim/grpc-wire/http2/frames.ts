// HTTP/2 framing (RFC 9113 section 4 and 6): the numbers of the protocol,
// the errors a peer's frames can cause, and the reader that cuts a
// connection's bytes into frames after checking the client's preface.

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export const FRAME_HEADER_LENGTH = 9;
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const LARGEST_MAX_FRAME_SIZE = 2 ** 24 - 1;
export const DEFAULT_WINDOW_SIZE = 65_535;
export const LARGEST_WINDOW_SIZE = 2 ** 31 - 1;
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Ends the whole connection: GOAWAY with `code`, then close. */
export class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Ends one stream: RST_STREAM with `code`; the connection goes on. */
export class StreamError extends Error {
  constructor(
    readonly streamId: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A frame header for a payload of `length` octets, written into `out` at `at`. */
export function writeFrameHeader(out: Buffer, at: number, length: number, type: number, flags: number, streamId: number): void {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  // Byte by byte, not writeUInt32BE: this runs for every frame, often before V8 optimizes it, and the checks cost more than the stores.
  out[at + 5] = (streamId >>> 24) & 0x7f;
  out[at + 6] = (streamId >>> 16) & 0xff;
  out[at + 7] = (streamId >>> 8) & 0xff;
  out[at + 8] = streamId & 0xff;
}

/** A whole frame with `payload` in one buffer. */
export function frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer {
  const length = payload ? payload.length : 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + length);
  writeFrameHeader(out, 0, length, type, flags, streamId);
  if (payload) payload.copy(out, FRAME_HEADER_LENGTH);
  return out;
}

export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => void;

/**
 * Cuts incoming bytes into frames. The first 24 octets must be the client
 * preface. A frame longer than `maxFrameSize` (what we advertised) is a
 * FRAME_SIZE_ERROR before any of its payload is buffered.
 */
export class FrameReader {
  /** Bytes of an incomplete frame (or preface), kept as they came until `needed` of them are there: one copy, however small the reads. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private needed = CLIENT_PREFACE.length;
  private prefaceSeen = false;

  constructor(
    private readonly maxFrameSize: number,
    private readonly onFrame: FrameHandler,
  ) {}

  /** Feeds bytes; calls onFrame for each whole frame. Throws ConnectionError (and whatever onFrame throws). */
  push(chunk: Buffer): void {
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed && this.prefaceSeen) return;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let at = 0;
    if (!this.prefaceSeen) {
      const seen = Math.min(data.length, CLIENT_PREFACE.length);
      if (data.compare(CLIENT_PREFACE, 0, seen, 0, seen) !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the connection does not start with the HTTP/2 client preface');
      if (seen < CLIENT_PREFACE.length) return this.keep(data, CLIENT_PREFACE.length);
      this.prefaceSeen = true;
      at = CLIENT_PREFACE.length;
    }
    while (data.length - at >= FRAME_HEADER_LENGTH) {
      const length = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2];
      if (length > this.maxFrameSize) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `a frame of ${length} octets, over the ${this.maxFrameSize} allowed`);
      const end = at + FRAME_HEADER_LENGTH + length;
      if (end > data.length) return this.keep(data.subarray(at), FRAME_HEADER_LENGTH + length);
      const type = data[at + 3];
      const flags = data[at + 4];
      const streamId = data.readUInt32BE(at + 5) & 0x7fffffff;
      this.onFrame(type, flags, streamId, data.subarray(at + FRAME_HEADER_LENGTH, end));
      at = end;
    }
    if (at < data.length) this.keep(data.subarray(at), FRAME_HEADER_LENGTH);
  }

  private keep(rest: Buffer, needed: number): void {
    this.pending = [rest];
    this.pendingBytes = rest.length;
    this.needed = needed;
  }
}

/** A DATA or HEADERS payload without its padding; padding as long as the payload is a PROTOCOL_ERROR. */
export function unpadded(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1 || payload[0] >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding as long as the frame');
  return payload.subarray(1, payload.length - payload[0]);
}

/** A frame whose payload is one 32-bit value (WINDOW_UPDATE, RST_STREAM). */
export function uint32Frame(type: number, streamId: number, value: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4);
  writeFrameHeader(out, 0, 4, type, 0, streamId);
  out.writeUInt32BE(value, FRAME_HEADER_LENGTH);
  return out;
}

/** A header block as a HEADERS frame and, past `maxFrameSize`, CONTINUATION frames. */
export function headerBlockFrames(streamId: number, block: Buffer, endStream: boolean, maxFrameSize: number): Buffer[] {
  const end = endStream ? Flag.END_STREAM : 0;
  if (block.length <= maxFrameSize) return [frame(FrameType.HEADERS, end | Flag.END_HEADERS, streamId, block)];
  const frames = [frame(FrameType.HEADERS, end, streamId, block.subarray(0, maxFrameSize))];
  for (let at = maxFrameSize; at < block.length; at += maxFrameSize) {
    frames.push(frame(FrameType.CONTINUATION, at + maxFrameSize >= block.length ? Flag.END_HEADERS : 0, streamId, block.subarray(at, at + maxFrameSize)));
  }
  return frames;
}

/** GOAWAY naming the last stream the sender took, with a readable reason as debug data. */
export function goawayFrame(lastStreamId: number, code: number, reason: string): Buffer {
  const debug = Buffer.from(reason.slice(0, 256), 'utf8');
  const payload = Buffer.allocUnsafe(8 + debug.length);
  payload.writeUInt32BE(lastStreamId, 0);
  payload.writeUInt32BE(code, 4);
  debug.copy(payload, 8);
  return frame(FrameType.GOAWAY, 0, 0, payload);
}
