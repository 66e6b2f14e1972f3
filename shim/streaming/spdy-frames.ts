// SPDY/3.1 framing: the binary frames, the name/value header blocks and their
// zlib compression with the SPDY/3 dictionary. Pure functions and small codecs,
// shared by the server session and the tests' client.
import { constants as zlibConstants, createInflate, type Inflate } from 'node:zlib';
import { SPDY3_HEADER_DICTIONARY } from './spdy-dictionary';

export const SPDY_VERSION = 3;

export const enum ControlType {
  SynStream = 1,
  SynReply = 2,
  RstStream = 3,
  Settings = 4,
  Ping = 6,
  GoAway = 7,
  Headers = 8,
  WindowUpdate = 9,
}

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
} as const;

export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
export const DEFAULT_WINDOW = 64 * 1024;
/** Frame length is 24 bits. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

/** Header names are lowercase on the wire; several values of one name are NUL-joined. */
export type SpdyHeaders = Map<string, string[]>;

export type SpdyFrame =
  | { type: 'data'; streamId: number; flags: number; data: Buffer }
  | { type: 'syn_stream'; streamId: number; associatedId: number; priority: number; flags: number; headers: SpdyHeaders }
  | { type: 'syn_reply'; streamId: number; flags: number; headers: SpdyHeaders }
  | { type: 'rst_stream'; streamId: number; status: number }
  | { type: 'settings'; flags: number; entries: { flags: number; id: number; value: number }[] }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastGoodStreamId: number; status: number }
  | { type: 'headers'; streamId: number; flags: number; headers: SpdyHeaders }
  | { type: 'window_update'; streamId: number; delta: number }
  | { type: 'unknown'; controlType: number };

export class SpdyProtocolError extends Error {}

export function headersFrom(record: Record<string, string | string[]>): SpdyHeaders {
  const out: SpdyHeaders = new Map();
  for (const [k, v] of Object.entries(record)) out.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
  return out;
}

/** First value of a header, looked up case-insensitively. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers.get(name.toLowerCase())?.[0];
}

export function encodeNameValueBlock(headers: SpdyHeaders): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(headers.size);
  parts.push(count);
  for (const [name, values] of headers) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(values.join('\0'), 'utf8');
    const nl = Buffer.alloc(4);
    nl.writeUInt32BE(n.length);
    const vl = Buffer.alloc(4);
    vl.writeUInt32BE(v.length);
    parts.push(nl, n, vl, v);
  }
  return Buffer.concat(parts);
}

export function decodeNameValueBlock(block: Buffer): SpdyHeaders {
  const headers: SpdyHeaders = new Map();
  if (block.length < 4) throw new SpdyProtocolError('header block too short');
  const count = block.readUInt32BE(0);
  let off = 4;
  const take = (): Buffer => {
    if (off + 4 > block.length) throw new SpdyProtocolError('truncated header block');
    const len = block.readUInt32BE(off);
    off += 4;
    if (off + len > block.length) throw new SpdyProtocolError('truncated header block');
    const b = block.subarray(off, off + len);
    off += len;
    return b;
  };
  for (let i = 0; i < count; i++) {
    const name = take().toString('utf8');
    const value = take().toString('utf8');
    if (name.length === 0) throw new SpdyProtocolError('empty header name');
    if (name !== name.toLowerCase()) throw new SpdyProtocolError(`header name not lowercase: ${name}`);
    const values = headers.get(name) ?? [];
    values.push(...value.split('\0'));
    headers.set(name, values);
  }
  return headers;
}

/**
 * Compresses header blocks of one direction of a connection. The zlib stream is
 * shared by every block of the connection, so it must stay one stream: a zlib
 * header naming the dictionary, then for each block non-final "stored" deflate
 * blocks holding it, then an empty stored block: the marker a Z_SYNC_FLUSH ends
 * with. The marker matters: Go's flate reader (client-go via moby/spdystream)
 * reads the next block header as soon as a stored block's data is consumed,
 * and the frame's compressed bytes must end there; without an empty block to
 * stop at it hits the end of the frame, and that error sticks to the
 * connection's decompressor, so the second header block the peer reads fails.
 * Header blocks are tiny and few, so not squeezing them costs nothing.
 */
/** An empty non-final stored block: BFINAL=0 BTYPE=00, LEN=0, NLEN=0xffff. */
const SYNC_FLUSH_MARKER = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);

export class HeaderCompressor {
  private started = false;

  compress(block: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      this.started = true;
      // CMF: deflate, 32K window. FLG: FDICT set, FCHECK so that (CMF*256+FLG) % 31 == 0.
      const cmf = 0x78;
      let flg = 0x20;
      flg += 31 - ((cmf * 256 + flg) % 31);
      const dictId = Buffer.alloc(4);
      dictId.writeUInt32BE(adler32(SPDY3_HEADER_DICTIONARY));
      parts.push(Buffer.from([cmf, flg]), dictId);
    }
    for (let off = 0; off < block.length || off === 0; off += 0xffff) {
      const piece = block.subarray(off, Math.min(block.length, off + 0xffff));
      const head = Buffer.alloc(5);
      head[0] = 0x00; // BFINAL=0, BTYPE=00 (stored); the rest of the byte is padding
      head.writeUInt16LE(piece.length, 1);
      head.writeUInt16LE(~piece.length & 0xffff, 3);
      parts.push(head, piece);
      if (block.length === 0) break;
    }
    parts.push(SYNC_FLUSH_MARKER);
    return Buffer.concat(parts);
  }
}

/** More than any header block needs; a block inflating past it is refused (a zlib bomb). */
export const MAX_HEADER_BLOCK = 1024 * 1024;

/**
 * Decompresses the header blocks a peer sends on one connection: one zlib
 * inflater for the connection's life, fed each block and sync-flushed, so a
 * block costs its own size whatever came before (a port-forward connection may
 * carry hundreds of thousands of streams). Node's inflater is asynchronous, so
 * blocks must be decompressed one at a time, in order.
 */
export class HeaderDecompressor {
  private readonly inflater: Inflate = createInflate({ dictionary: SPDY3_HEADER_DICTIONARY });
  private failure: Error | undefined;
  private output: Buffer[] = [];
  private outputLength = 0;

  constructor() {
    this.inflater.on('data', (chunk: Buffer) => {
      this.output.push(chunk);
      this.outputLength += chunk.length;
    });
    this.inflater.on('error', (err: Error) => {
      this.failure ??= new SpdyProtocolError(`header block does not inflate: ${err.message}`);
    });
  }

  decompress(compressed: Buffer): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const settle = (): void => {
        this.inflater.off('error', settle);
        const out = Buffer.concat(this.output, this.outputLength);
        this.output = [];
        this.outputLength = 0;
        if (!this.failure && out.length > MAX_HEADER_BLOCK) this.failure = new SpdyProtocolError('header block too large');
        if (this.failure) {
          this.inflater.destroy();
          reject(this.failure);
        } else {
          resolve(out);
        }
      };
      this.inflater.once('error', settle);
      this.inflater.write(compressed);
      this.inflater.flush(zlibConstants.Z_SYNC_FLUSH, settle);
    });
  }

  close(): void {
    this.inflater.destroy();
  }
}

export function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function controlFrame(type: ControlType, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new SpdyProtocolError('control frame too long');
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([head, payload]);
}

/** Encodes frames; header blocks go through this direction's compressor. */
export class SpdyFrameEncoder {
  private readonly compressor = new HeaderCompressor();

  data(streamId: number, data: Buffer, fin: boolean): Buffer {
    if (data.length > MAX_FRAME_PAYLOAD) throw new SpdyProtocolError('data frame too long');
    const head = Buffer.alloc(8);
    head.writeUInt32BE(streamId & 0x7fffffff, 0);
    head.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | data.length, 4);
    return Buffer.concat([head, data]);
  }

  synStream(streamId: number, headers: SpdyHeaders, opts: { fin?: boolean; associatedId?: number; priority?: number } = {}): Buffer {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt32BE(streamId & 0x7fffffff, 0);
    fixed.writeUInt32BE((opts.associatedId ?? 0) & 0x7fffffff, 4);
    fixed[8] = ((opts.priority ?? 0) & 0x7) << 5;
    fixed[9] = 0; // slot
    const block = this.compressor.compress(encodeNameValueBlock(headers));
    return controlFrame(ControlType.SynStream, opts.fin ? FLAG_FIN : 0, Buffer.concat([fixed, block]));
  }

  synReply(streamId: number, headers: SpdyHeaders, fin = false): Buffer {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(streamId & 0x7fffffff);
    return controlFrame(ControlType.SynReply, fin ? FLAG_FIN : 0, Buffer.concat([id, this.compressor.compress(encodeNameValueBlock(headers))]));
  }

  headers(streamId: number, headers: SpdyHeaders, fin = false): Buffer {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(streamId & 0x7fffffff);
    return controlFrame(ControlType.Headers, fin ? FLAG_FIN : 0, Buffer.concat([id, this.compressor.compress(encodeNameValueBlock(headers))]));
  }

  rstStream(streamId: number, status: number): Buffer {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(streamId & 0x7fffffff, 0);
    p.writeUInt32BE(status, 4);
    return controlFrame(ControlType.RstStream, 0, p);
  }

  settings(entries: { flags?: number; id: number; value: number }[], flags = 0): Buffer {
    const p = Buffer.alloc(4 + entries.length * 8);
    p.writeUInt32BE(entries.length, 0);
    entries.forEach((e, i) => {
      p.writeUInt32BE((((e.flags ?? 0) & 0xff) << 24) | (e.id & 0xffffff), 4 + i * 8);
      p.writeUInt32BE(e.value >>> 0, 8 + i * 8);
    });
    return controlFrame(ControlType.Settings, flags, p);
  }

  ping(id: number): Buffer {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(id >>> 0);
    return controlFrame(ControlType.Ping, 0, p);
  }

  goAway(lastGoodStreamId: number, status = 0): Buffer {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(lastGoodStreamId & 0x7fffffff, 0);
    p.writeUInt32BE(status, 4);
    return controlFrame(ControlType.GoAway, 0, p);
  }

  windowUpdate(streamId: number, delta: number): Buffer {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(streamId & 0x7fffffff, 0);
    p.writeUInt32BE(delta & 0x7fffffff, 4);
    return controlFrame(ControlType.WindowUpdate, 0, p);
  }
}

/**
 * Splits a byte stream into frames. Feed it whatever the socket delivers; it
 * returns the complete frames and keeps the rest. Header blocks are inflated
 * with this direction's decompressor as the frames come out, in order.
 */
export class SpdyFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private readonly decompressor = new HeaderDecompressor();

  constructor(private readonly maxFrame = MAX_FRAME_PAYLOAD) {}

  /**
   * Splits what arrived into frames and decodes them, header blocks inflated
   * in order. Calls must not overlap: the next one waits for this one.
   */
  async push(chunk: Buffer): Promise<SpdyFrame[]> {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const raw: Buffer[] = [];
    while (this.pending.length >= 8) {
      const length = this.pending.readUInt32BE(4) & 0xffffff;
      if (length > this.maxFrame) throw new SpdyProtocolError(`frame of ${length} bytes is too long`);
      if (this.pending.length < 8 + length) break;
      raw.push(this.pending.subarray(0, 8 + length));
      this.pending = this.pending.subarray(8 + length);
    }
    const frames: SpdyFrame[] = [];
    for (const frame of raw) frames.push(await this.decode(frame));
    return frames;
  }

  close(): void {
    this.decompressor.close();
  }

  private async decode(frame: Buffer): Promise<SpdyFrame> {
    const flags = frame[4];
    const payload = frame.subarray(8);
    if ((frame[0] & 0x80) === 0) {
      return { type: 'data', streamId: frame.readUInt32BE(0) & 0x7fffffff, flags, data: Buffer.from(payload) };
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    if (version !== SPDY_VERSION) throw new SpdyProtocolError(`unsupported SPDY version ${version}`);
    const type = frame.readUInt16BE(2);
    const need = (n: number): void => {
      if (payload.length < n) throw new SpdyProtocolError(`control frame ${type} too short`);
    };
    switch (type) {
      case ControlType.SynStream:
        need(10);
        return {
          type: 'syn_stream',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          associatedId: payload.readUInt32BE(4) & 0x7fffffff,
          priority: payload[8] >> 5,
          flags,
          headers: decodeNameValueBlock(await this.decompressor.decompress(payload.subarray(10))),
        };
      case ControlType.SynReply:
        need(4);
        return {
          type: 'syn_reply',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          flags,
          headers: decodeNameValueBlock(await this.decompressor.decompress(payload.subarray(4))),
        };
      case ControlType.Headers:
        need(4);
        return {
          type: 'headers',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          flags,
          headers: decodeNameValueBlock(await this.decompressor.decompress(payload.subarray(4))),
        };
      case ControlType.RstStream:
        need(8);
        return { type: 'rst_stream', streamId: payload.readUInt32BE(0) & 0x7fffffff, status: payload.readUInt32BE(4) };
      case ControlType.Settings: {
        need(4);
        const count = payload.readUInt32BE(0);
        need(4 + count * 8);
        const entries = [];
        for (let i = 0; i < count; i++) {
          const word = payload.readUInt32BE(4 + i * 8);
          entries.push({ flags: word >>> 24, id: word & 0xffffff, value: payload.readUInt32BE(8 + i * 8) });
        }
        return { type: 'settings', flags, entries };
      }
      case ControlType.Ping:
        need(4);
        return { type: 'ping', id: payload.readUInt32BE(0) };
      case ControlType.GoAway:
        need(4);
        return {
          type: 'goaway',
          lastGoodStreamId: payload.readUInt32BE(0) & 0x7fffffff,
          status: payload.length >= 8 ? payload.readUInt32BE(4) : 0,
        };
      case ControlType.WindowUpdate:
        need(8);
        return { type: 'window_update', streamId: payload.readUInt32BE(0) & 0x7fffffff, delta: payload.readUInt32BE(4) & 0x7fffffff };
      default:
        return { type: 'unknown', controlType: type };
    }
  }
}
