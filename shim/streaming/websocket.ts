// WebSocket (RFC 6455): the opening handshake's accept key, subprotocol choice,
// and a message-level connection over a socket. Server side sends unmasked
// frames and requires masked ones; the tests' client is the mirror image.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { drainedOrClosed } from './socket-drain';

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const enum Opcode {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
} as const;

export function websocketAcceptKey(clientKey: string): string {
  return createHash('sha1').update(clientKey + HANDSHAKE_GUID).digest('base64');
}

/** Subprotocols offered in Sec-WebSocket-Protocol (comma separated, possibly repeated headers). */
export function offeredSubprotocols(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const lines = Array.isArray(header) ? header : [header];
  return lines.flatMap((l) => l.split(',')).map((p) => p.trim()).filter((p) => p.length > 0);
}

export class WebSocketProtocolError extends Error {
  constructor(
    message: string,
    readonly code: number = CloseCode.PROTOCOL_ERROR,
  ) {
    super(message);
  }
}

export interface WebSocketMessage {
  binary: boolean;
  data: Buffer;
}

export interface WebSocketEvents {
  message: [WebSocketMessage];
  /** The connection is gone; code/reason from the peer's close frame when there was one. */
  close: [number, string];
  pong: [Buffer];
}

/** Frames parsed from raw bytes; kept apart so unit tests can feed it arbitrary splits. */
export class WebSocketFrameParser {
  private pending: Buffer = Buffer.alloc(0);

  constructor(
    private readonly expectMasked: boolean,
    private readonly maxPayload: number,
  ) {}

  push(chunk: Buffer): { fin: boolean; opcode: number; payload: Buffer }[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: { fin: boolean; opcode: number; payload: Buffer }[] = [];
    for (;;) {
      const b = this.pending;
      if (b.length < 2) break;
      const fin = (b[0] & 0x80) !== 0;
      if (b[0] & 0x70) throw new WebSocketProtocolError('reserved bits set without an extension');
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      if (masked !== this.expectMasked) throw new WebSocketProtocolError(masked ? 'server frames must not be masked' : 'client frames must be masked');
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(this.maxPayload)) throw new WebSocketProtocolError('frame too big', CloseCode.TOO_BIG);
        len = Number(big);
        off = 10;
      }
      if (len > this.maxPayload) throw new WebSocketProtocolError('frame too big', CloseCode.TOO_BIG);
      if (opcode >= 0x8 && (len > 125 || !fin)) throw new WebSocketProtocolError('bad control frame');
      const maskLen = masked ? 4 : 0;
      if (b.length < off + maskLen + len) break;
      const payload = Buffer.from(b.subarray(off + maskLen, off + maskLen + len));
      if (masked) {
        const key = b.subarray(off, off + 4);
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      }
      this.pending = b.subarray(off + maskLen + len);
      out.push({ fin, opcode, payload });
    }
    return out;
  }
}

export function encodeWebSocketFrame(opcode: number, payload: Buffer, mask: boolean, fin = true): Buffer {
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  key.copy(head, 2 + lenBytes);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([head, body]);
}

export class WebSocketConnection extends EventEmitter<WebSocketEvents> {
  private readonly parser: WebSocketFrameParser;
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;
  private fragmentSize = 0;
  private closeSent = false;
  private finished = false;

  constructor(
    readonly socket: Duplex,
    readonly role: 'server' | 'client',
    private readonly maxMessage = 16 * 1024 * 1024,
    head?: Buffer,
  ) {
    super();
    this.parser = new WebSocketFrameParser(role === 'server', maxMessage);
    // Bytes that arrived with the handshake go first; 'data' flows from the next tick,
    // after the caller attached its listeners.
    if (head && head.length > 0) socket.unshift(head);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.finish(CloseCode.GOING_AWAY, 'connection closed'));
    socket.on('end', () => this.finish(CloseCode.GOING_AWAY, 'connection closed'));
    socket.on('error', () => this.finish(CloseCode.GOING_AWAY, 'connection error'));
  }

  get isOpen(): boolean {
    return !this.finished && !this.closeSent;
  }

  /** Sends one message; resolves when the socket accepted it (backpressure). */
  send(data: Buffer, binary = true): Promise<void> {
    if (!this.isOpen) return Promise.reject(new Error('WebSocket is closed'));
    const ok = this.socket.write(encodeWebSocketFrame(binary ? Opcode.Binary : Opcode.Text, data, this.role === 'client'));
    if (ok) return Promise.resolve();
    return drainedOrClosed(this.socket);
  }

  ping(data: Buffer = Buffer.alloc(0)): void {
    if (this.isOpen) this.socket.write(encodeWebSocketFrame(Opcode.Ping, data, this.role === 'client'));
  }

  /** Close handshake: send a close frame, end the socket once the peer answers (or soon after). */
  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.finished) return;
    if (!this.closeSent) {
      this.closeSent = true;
      const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
      payload.writeUInt16BE(code, 0);
      payload.write(reason, 2);
      if (!this.socket.destroyed) this.socket.write(encodeWebSocketFrame(Opcode.Close, payload, this.role === 'client'));
    }
    // The server closes the TCP connection first (RFC 6455 7.1.1); a client waits for it.
    if (this.role === 'server') this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 2000);
    timer.unref();
  }

  destroy(): void {
    this.socket.destroy();
    this.finish(CloseCode.GOING_AWAY, 'destroyed');
  }

  private finish(code: number, reason: string): void {
    if (this.finished) return;
    this.finished = true;
    this.emit('close', code, reason);
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    let frames;
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      const e = err as WebSocketProtocolError;
      this.close(e.code ?? CloseCode.PROTOCOL_ERROR, e.message.slice(0, 100));
      this.socket.destroy();
      this.finish(e.code ?? CloseCode.PROTOCOL_ERROR, e.message);
      return;
    }
    for (const frame of frames) {
      if (this.finished) return;
      switch (frame.opcode) {
        case Opcode.Ping:
          if (!this.closeSent) this.socket.write(encodeWebSocketFrame(Opcode.Pong, frame.payload, this.role === 'client'));
          break;
        case Opcode.Pong:
          this.emit('pong', frame.payload);
          break;
        case Opcode.Close: {
          const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
          const reason = frame.payload.length > 2 ? frame.payload.subarray(2).toString('utf8') : '';
          if (!this.closeSent) {
            this.closeSent = true;
            this.socket.write(encodeWebSocketFrame(Opcode.Close, frame.payload.subarray(0, 2), this.role === 'client'));
          }
          this.socket.end();
          this.finish(code, reason);
          break;
        }
        case Opcode.Text:
        case Opcode.Binary:
        case Opcode.Continuation:
          this.onDataFrame(frame.fin, frame.opcode, frame.payload);
          break;
        default:
          this.close(CloseCode.PROTOCOL_ERROR, 'unknown opcode');
      }
    }
  }

  private onDataFrame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode === Opcode.Continuation) {
      if (this.fragmentOpcode === 0) return this.close(CloseCode.PROTOCOL_ERROR, 'continuation without a message');
    } else {
      if (this.fragmentOpcode !== 0) return this.close(CloseCode.PROTOCOL_ERROR, 'new message inside a fragmented one');
      this.fragmentOpcode = opcode;
    }
    this.fragments.push(payload);
    this.fragmentSize += payload.length;
    if (this.fragmentSize > this.maxMessage) return this.close(CloseCode.TOO_BIG, 'message too big');
    if (!fin) return;
    const data = this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments);
    const binary = this.fragmentOpcode === Opcode.Binary;
    this.fragments = [];
    this.fragmentOpcode = 0;
    this.fragmentSize = 0;
    this.emit('message', { binary, data });
  }
}

/**
 * A byte stream carried in the binary messages of a WebSocket, as client-go's
 * port-forward "tunneling" sends SPDY/3.1 (subprotocol SPDY/3.1+portforward.k8s.io):
 * each write is one message, message boundaries mean nothing. Ending the
 * writable side closes the WebSocket normally.
 */
export class WebSocketTunnel extends Duplex {
  constructor(readonly ws: WebSocketConnection) {
    super({ allowHalfOpen: false });
    ws.on('message', (message) => {
      if (!message.binary) {
        this.destroy(new Error('text message on a byte tunnel'));
        return;
      }
      this.push(message.data);
    });
    ws.on('close', () => {
      this.push(null);
      if (!this.destroyed) this.destroy();
    });
  }

  override _read(): void {
    // Messages are pushed as they arrive; the WebSocket has no way to pause its peer.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.ws.send(chunk, true).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ws.close(CloseCode.NORMAL, '');
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.ws.isOpen) this.ws.close(error ? CloseCode.INTERNAL_ERROR : CloseCode.NORMAL, '');
    callback(error);
  }
}
