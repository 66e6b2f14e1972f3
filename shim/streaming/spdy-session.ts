// A SPDY/3.1 connection over an upgraded HTTP socket: multiplexed streams
// (each a Node Duplex), pings, GOAWAY, RST_STREAM, SETTINGS and flow control.
// The same class serves both ends: berth's streaming server and the tests' client.
//
// Flow control: the kubelet and client-go speak SPDY/3.1 through
// moby/spdystream, which never sends WINDOW_UPDATE. Honouring the 64 KiB initial
// window towards such a peer would stall every stream after 64 KiB, so the send
// window is only enforced once the peer has shown it does flow control by
// sending a WINDOW_UPDATE. Windows are counted from the start either way, and
// this side always tells the peer what it consumed.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { drainedOrClosed } from './socket-drain';
import {
  DEFAULT_WINDOW,
  FLAG_FIN,
  RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SpdyFrameDecoder,
  SpdyFrameEncoder,
  SpdyProtocolError,
  type SpdyFrame,
  type SpdyHeaders,
} from './spdy-frames';

const MAX_DATA_FRAME = 32 * 1024;

export type SpdyRole = 'server' | 'client';

export class SpdyStreamReset extends Error {
  constructor(
    readonly streamId: number,
    readonly status: number,
  ) {
    super(`SPDY stream ${streamId} was reset (status ${status})`);
  }
}

export class SpdyStream extends Duplex {
  /** Headers of the SYN_STREAM that opened this stream. */
  readonly headers: SpdyHeaders;
  /** Headers of the SYN_REPLY (client side), once it came. */
  replyHeaders: SpdyHeaders | undefined;
  sendWindow: number;
  private unacked = 0;
  localFinished = false;
  remoteFinished = false;
  reset = false;

  constructor(
    readonly session: SpdySession,
    readonly id: number,
    headers: SpdyHeaders,
    initialSendWindow: number,
  ) {
    super({ allowHalfOpen: true });
    this.headers = headers;
    this.sendWindow = initialSendWindow;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.session.sendData(this, chunk, false).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.session.sendData(this, Buffer.alloc(0), true).then(() => callback(), callback);
  }

  override _read(): void {
    this.session.creditConsumed(this, 0);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.session.streamDestroyed(this);
    callback(error);
  }

  /** Received data: hand it to the reader and count it for the window update. */
  deliver(data: Buffer): void {
    if (this.destroyed || this.remoteFinished) return;
    this.unacked += data.length;
    this.push(data);
  }

  takeUnacked(): number {
    const n = this.unacked;
    this.unacked = 0;
    return n;
  }

  get unackedBytes(): number {
    return this.unacked;
  }

  /** Aborts the stream with RST_STREAM (CANCEL unless told otherwise). */
  resetStream(status: number = RstStatus.CANCEL): void {
    this.session.resetStream(this, status);
  }
}

export interface SpdySessionEvents {
  stream: [SpdyStream];
  close: [];
  goaway: [number];
  error: [Error];
}

export class SpdySession extends EventEmitter<SpdySessionEvents> {
  private readonly encoder = new SpdyFrameEncoder();
  private readonly decoder = new SpdyFrameDecoder();
  private readonly streams = new Map<number, SpdyStream>();
  private nextStreamId: number;
  private nextPingId: number;
  private lastRemoteStreamId = 0;
  private readonly pings = new Map<number, () => void>();
  private peerFlowControl = false;
  private connectionSendWindow = DEFAULT_WINDOW;
  private connectionUnacked = 0;
  private initialSendWindow = DEFAULT_WINDOW;
  private readonly windowWaiters: (() => void)[] = [];
  private goingAway = false;
  /** The socket's events, handled one after the other (see the constructor). */
  private inbound: Promise<void> = Promise.resolve();
  closed = false;

  constructor(
    readonly socket: Duplex,
    readonly role: SpdyRole,
  ) {
    super();
    this.nextStreamId = role === 'client' ? 1 : 2;
    this.nextPingId = role === 'client' ? 1 : 2;
    // Frames are decoded asynchronously (header blocks go through zlib), so
    // everything the socket reports is queued behind the frames before it:
    // an end right after the last frames must not overtake them.
    socket.on('data', (chunk: Buffer) => this.inOrder(() => this.onData(chunk)));
    socket.on('close', () => this.inOrder(() => this.onClose()));
    socket.on('end', () => this.inOrder(() => this.onClose()));
    socket.on('error', () => this.inOrder(() => this.onClose()));
  }

  private inOrder(step: () => void | Promise<void>): void {
    this.inbound = this.inbound.then(step, step);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream (SYN_STREAM); the reply arrives as the stream's 'reply' event. */
  openStream(headers: SpdyHeaders, fin = false): SpdyStream {
    if (this.closed || this.goingAway) throw new Error('SPDY session is closed');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new SpdyStream(this, id, headers, this.initialSendWindow);
    this.streams.set(id, stream);
    this.write(this.encoder.synStream(id, headers, { fin }));
    if (fin) {
      stream.localFinished = true;
      stream.end();
    }
    return stream;
  }

  /** Sends a ping and resolves when the peer answers it. */
  ping(): Promise<void> {
    const id = this.nextPingId;
    this.nextPingId += 2;
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('SPDY session is closed'));
      this.pings.set(id, resolve);
      this.write(this.encoder.ping(id));
    });
  }

  /** GOAWAY then end the socket once written. Streams still open are dropped. */
  close(): void {
    if (this.closed) return;
    if (!this.goingAway) {
      this.goingAway = true;
      this.write(this.encoder.goAway(this.lastRemoteStreamId, 0));
    }
    this.socket.end();
    this.onClose();
  }

  destroy(): void {
    this.socket.destroy();
    this.onClose();
  }

  sendSettingsInitialWindow(size: number): void {
    this.write(this.encoder.settings([{ id: SETTINGS_INITIAL_WINDOW_SIZE, value: size }]));
  }

  // --- used by SpdyStream ---

  async sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    let off = 0;
    do {
      if (this.closed) throw new Error('SPDY session is closed');
      if (stream.reset) throw new SpdyStreamReset(stream.id, RstStatus.CANCEL);
      if (stream.localFinished) throw new Error(`SPDY stream ${stream.id} already finished`);
      let size = Math.min(data.length - off, MAX_DATA_FRAME);
      if (this.peerFlowControl && size > 0) {
        const allowed = Math.min(stream.sendWindow, this.connectionSendWindow);
        if (allowed <= 0) {
          await new Promise<void>((resolve) => this.windowWaiters.push(resolve));
          continue;
        }
        size = Math.min(size, allowed);
      }
      const piece = data.subarray(off, off + size);
      off += size;
      stream.sendWindow -= size;
      this.connectionSendWindow -= size;
      const last = off >= data.length;
      if (last && fin) stream.localFinished = true;
      const drained = this.write(this.encoder.data(stream.id, piece, last && fin));
      if (!drained) await this.waitDrain();
    } while (off < data.length);
    if (fin) this.maybeForget(stream);
  }

  creditConsumed(stream: SpdyStream, _extra: number): void {
    // Tell the peer once half a window has been read, per stream and for the connection.
    if (stream.unackedBytes >= DEFAULT_WINDOW / 2 && !stream.remoteFinished && !this.closed) {
      this.write(this.encoder.windowUpdate(stream.id, stream.takeUnacked()));
    }
    if (this.connectionUnacked >= DEFAULT_WINDOW / 2 && !this.closed) {
      this.write(this.encoder.windowUpdate(0, this.connectionUnacked));
      this.connectionUnacked = 0;
    }
  }

  resetStream(stream: SpdyStream, status: number): void {
    if (!stream.reset && !(stream.localFinished && stream.remoteFinished) && !this.closed) {
      this.write(this.encoder.rstStream(stream.id, status));
    }
    stream.reset = true;
    this.streams.delete(stream.id);
    if (!stream.destroyed) stream.destroy();
  }

  streamDestroyed(stream: SpdyStream): void {
    if (this.streams.get(stream.id) === stream) {
      // Destroyed by its user before both sides finished: the peer must hear of it.
      if (!(stream.localFinished && stream.remoteFinished) && !stream.reset && !this.closed) {
        stream.reset = true;
        this.write(this.encoder.rstStream(stream.id, RstStatus.CANCEL));
      }
      this.streams.delete(stream.id);
    }
  }

  // --- internals ---

  private write(frame: Buffer): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return true;
    return this.socket.write(frame);
  }

  private waitDrain(): Promise<void> {
    return drainedOrClosed(this.socket);
  }

  private wakeWriters(): void {
    const waiters = this.windowWaiters.splice(0);
    for (const w of waiters) w();
  }

  private maybeForget(stream: SpdyStream): void {
    if (stream.localFinished && stream.remoteFinished) this.streams.delete(stream.id);
  }

  private async onData(chunk: Buffer): Promise<void> {
    if (this.closed) return;
    let frames: SpdyFrame[];
    try {
      frames = await this.decoder.push(chunk);
    } catch (err) {
      this.protocolError(err as Error);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      this.handle(frame);
    }
  }

  private protocolError(err: Error): void {
    if (this.closed) return;
    if (!this.goingAway) {
      this.goingAway = true;
      this.write(this.encoder.goAway(this.lastRemoteStreamId, 1));
    }
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.destroy();
  }

  private handle(frame: SpdyFrame): void {
    switch (frame.type) {
      case 'syn_stream': {
        const ownParity = this.role === 'client' ? 1 : 0;
        if (frame.streamId === 0 || frame.streamId % 2 === ownParity || frame.streamId <= this.lastRemoteStreamId) {
          this.write(this.encoder.rstStream(frame.streamId, RstStatus.PROTOCOL_ERROR));
          return;
        }
        this.lastRemoteStreamId = frame.streamId;
        if (this.goingAway) {
          this.write(this.encoder.rstStream(frame.streamId, RstStatus.REFUSED_STREAM));
          return;
        }
        const stream = new SpdyStream(this, frame.streamId, frame.headers, this.initialSendWindow);
        this.streams.set(frame.streamId, stream);
        // Every stream a k8s client opens is accepted; the protocol layer decides what it is for.
        this.write(this.encoder.synReply(frame.streamId, new Map()));
        if (frame.flags & FLAG_FIN) {
          stream.remoteFinished = true;
          stream.push(null);
        }
        this.emit('stream', stream);
        return;
      }
      case 'syn_reply': {
        const stream = this.streams.get(frame.streamId);
        if (!stream) return;
        stream.replyHeaders = frame.headers;
        stream.emit('reply', frame.headers);
        if (frame.flags & FLAG_FIN) this.remoteFin(stream);
        return;
      }
      case 'headers': {
        const stream = this.streams.get(frame.streamId);
        if (stream && frame.flags & FLAG_FIN) this.remoteFin(stream);
        return;
      }
      case 'data': {
        this.connectionUnacked += frame.data.length;
        const stream = this.streams.get(frame.streamId);
        if (!stream || stream.remoteFinished) {
          if (frame.streamId !== 0 && !stream) this.write(this.encoder.rstStream(frame.streamId, RstStatus.INVALID_STREAM));
          this.creditConnectionOnly();
          return;
        }
        if (frame.data.length > 0) stream.deliver(frame.data);
        if (frame.flags & FLAG_FIN) this.remoteFin(stream);
        else this.creditConsumed(stream, 0);
        return;
      }
      case 'rst_stream': {
        const stream = this.streams.get(frame.streamId);
        if (!stream) return;
        stream.reset = true;
        this.streams.delete(frame.streamId);
        stream.emit('reset', frame.status);
        // A reset is the peer abandoning the stream: readers see its end, writers an error.
        if (!stream.remoteFinished) {
          stream.remoteFinished = true;
          stream.push(null);
        }
        stream.destroy();
        this.wakeWriters();
        return;
      }
      case 'settings':
        for (const entry of frame.entries) {
          if (entry.id === SETTINGS_INITIAL_WINDOW_SIZE) {
            const delta = entry.value - this.initialSendWindow;
            this.initialSendWindow = entry.value;
            for (const s of this.streams.values()) s.sendWindow += delta;
            this.wakeWriters();
          }
        }
        return;
      case 'ping': {
        const fromPeer = frame.id % 2 !== (this.role === 'client' ? 1 : 0);
        if (fromPeer) {
          this.write(this.encoder.ping(frame.id));
        } else {
          const resolve = this.pings.get(frame.id);
          this.pings.delete(frame.id);
          resolve?.();
        }
        return;
      }
      case 'goaway':
        this.goingAway = true;
        this.emit('goaway', frame.lastGoodStreamId);
        return;
      case 'window_update':
        this.peerFlowControl = true;
        if (frame.streamId === 0) {
          this.connectionSendWindow += frame.delta;
        } else {
          const stream = this.streams.get(frame.streamId);
          if (stream) stream.sendWindow += frame.delta;
        }
        this.wakeWriters();
        return;
      case 'unknown':
        return;
      default:
        return;
    }
  }

  private creditConnectionOnly(): void {
    if (this.connectionUnacked >= DEFAULT_WINDOW / 2 && !this.closed) {
      this.write(this.encoder.windowUpdate(0, this.connectionUnacked));
      this.connectionUnacked = 0;
    }
  }

  private remoteFin(stream: SpdyStream): void {
    if (stream.remoteFinished) return;
    stream.remoteFinished = true;
    stream.push(null);
    this.maybeForget(stream);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.decoder.close();
    this.wakeWriters();
    for (const resolve of this.pings.values()) resolve();
    this.pings.clear();
    for (const stream of this.streams.values()) {
      stream.reset = true;
      if (!stream.remoteFinished) {
        stream.remoteFinished = true;
        stream.push(null);
      }
      if (!stream.destroyed) stream.destroy();
    }
    this.streams.clear();
    this.emit('close');
  }
}

export { SpdyProtocolError };
