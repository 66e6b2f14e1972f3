// An HTTP/2 client that writes frames exactly as a test builds them and
// records every frame the server sends, with the index of the socket read
// that brought it: for the cases no real client produces (CONTINUATION,
// padding, bad HPACK, broken framing) and to see how answers are written.
import { connect, type Socket } from 'node:net';
import { HpackDecoder, type HeaderList } from '../../shim/grpc-wire/http2/hpack-decoder';
import { encodeHeaderBlock } from '../../shim/grpc-wire/http2/hpack-encoder';
import { CLIENT_PREFACE, Flag, FrameType, frame, uint32Frame } from '../../shim/grpc-wire/http2/frames';

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
  /** Which socket read brought the frame's last byte (0 for the first read). */
  read: number;
  /** HEADERS: the decoded header list. */
  headers?: HeaderList;
}

export const REQUEST_FIELDS: ReadonlyArray<readonly [string, string]> = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/t.S/Echo'],
  [':authority', 'localhost'],
  ['content-type', 'application/grpc'],
  ['te', 'trailers'],
];

export function requestBlock(path = '/t.S/Echo', extra: ReadonlyArray<readonly [string, string]> = []): Buffer {
  return encodeHeaderBlock([...REQUEST_FIELDS.map(([name, value]) => [name, name === ':path' ? path : value] as const), ...extra]);
}

export function settingsFrame(settings: Array<[number, number]> = []): Buffer {
  const payload = Buffer.alloc(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

export class RawHttp2Client {
  readonly frames: ReceivedFrame[] = [];
  closed = false;
  private readonly socket: Socket;
  private readonly decoder = new HpackDecoder();
  private pending = Buffer.alloc(0);
  private reads = 0;
  private waiters: Array<() => void> = [];

  /** Connects; sends the preface and `settings` unless `preface` is false. */
  constructor(socketPath: string, options: { preface?: boolean; settings?: Array<[number, number]> } = {}) {
    this.socket = connect(socketPath);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    if (options.preface !== false) this.send(CLIENT_PREFACE, settingsFrame(options.settings));
  }

  send(...bytes: Buffer[]): void {
    this.socket.write(Buffer.concat(bytes));
  }

  /** A request on `streamId`: HEADERS then, with `body`, one DATA frame ending the stream. */
  request(streamId: number, body?: Buffer, path?: string): void {
    const headers = frame(FrameType.HEADERS, Flag.END_HEADERS | (body ? 0 : Flag.END_STREAM), streamId, requestBlock(path));
    this.send(headers, ...(body ? [frame(FrameType.DATA, Flag.END_STREAM, streamId, body)] : []));
  }

  windowUpdate(streamId: number, increment: number): void {
    this.send(uint32Frame(FrameType.WINDOW_UPDATE, streamId, increment));
  }

  /** Waits until `predicate` holds for the frames seen, or the connection closes (then returns whether it holds). */
  async until(predicate: (frames: ReceivedFrame[]) => boolean): Promise<boolean> {
    while (!predicate(this.frames)) {
      if (this.closed) return predicate(this.frames);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return true;
  }

  /** Frames of `type` (on `streamId` when given). */
  of(type: number, streamId?: number): ReceivedFrame[] {
    return this.frames.filter((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
  }

  /** The GOAWAY's error code, once one arrived. */
  goawayCode(): number | undefined {
    const goaway = this.of(FrameType.GOAWAY)[0];
    return goaway?.payload.readUInt32BE(4);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const read = this.reads++;
    let data = Buffer.concat([this.pending, chunk]);
    while (data.length >= 9) {
      const length = data.readUIntBE(0, 3);
      if (data.length < 9 + length) break;
      const received: ReceivedFrame = { type: data[3], flags: data[4], streamId: data.readUInt32BE(5) & 0x7fffffff, payload: data.subarray(9, 9 + length), read };
      // Our server never splits its blocks here except where a test asks; CONTINUATION is decoded with its HEADERS by tests that need it.
      if (received.type === FrameType.HEADERS && received.flags & Flag.END_HEADERS) received.headers = this.decoder.decode(received.payload).headers;
      this.frames.push(received);
      data = data.subarray(9 + length);
    }
    this.pending = Buffer.from(data);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
