// The server side of one HTTP/2 connection (RFC 9113) over a stream socket,
// for what a gRPC server needs: the client preface and SETTINGS exchange,
// request header blocks (header-block.ts, hpack-decoder.ts), DATA with flow
// control both ways, RST_STREAM, PING, GOAWAY, a limit on concurrent
// streams, keepalive pings and a graceful close. What we send leaves through
// SocketWriter, so a unary answer's HEADERS, DATA and trailers reach the
// client in one write. Whatever a peer sends, the outcome is a stream reset
// or GOAWAY and close, never an exception out of a socket callback.
import type { Socket } from 'node:net';
import { CompressionError, HpackDecoder, type HeaderList } from './hpack-decoder';
import { encodeHeaderBlock } from './hpack-encoder';
import { malformedRequest } from './request-headers';
import { Http2ServerStream, type StreamOwner } from './stream';
import { HeaderBlockAssembler } from './header-block';
import { SocketWriter } from './socket-writer';
import { AnswerSender } from './answer-sender';
import { ConnectionError, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW_SIZE, ErrorCode, Flag, FrameReader, FrameType, Setting, StreamError, frame, goawayFrame, uint32Frame, unpadded } from './frames';

export interface ConnectionOptions {
  maxConcurrentStreams: number;
  /** Our receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the whole connection. */
  streamWindowBytes: number;
  connectionWindowBytes: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a request whose header list is larger is answered 431. */
  maxHeaderListBytes: number;
  /** Ping this often; close when a ping is not answered within keepaliveTimeoutMs. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
}

export interface ConnectionEvents {
  /** A new request; the handler sets stream.listener before returning. */
  onStream(stream: Http2ServerStream, headers: HeaderList): void;
  /** The peer broke the protocol (the connection is being closed with GOAWAY). */
  onError(err: Error): void;
  onClose(): void;
}

/** We keep the protocol's default frame size and HPACK table size for what we receive. */
const LOCAL_MAX_FRAME_SIZE = DEFAULT_MAX_FRAME_SIZE;
const LOCAL_HEADER_TABLE_SIZE = 4096;
/** Stream ids we reset, remembered so frames the client sent before it heard are ignored. */
const REMEMBERED_RESETS = 256;
const PAUSE_READING_ABOVE_BYTES = 4 << 20;
const HEADER_LIST_TOO_LARGE = encodeHeaderBlock([[':status', '431']]);

export class Http2ServerConnection implements StreamOwner {
  private readonly streams = new Map<number, Http2ServerStream>();
  private readonly resetByUs = new Set<number>();
  private readonly reader: FrameReader;
  private readonly decoder = new HpackDecoder(LOCAL_HEADER_TABLE_SIZE);
  private readonly writer: SocketWriter;
  private readonly sender: AnswerSender;
  private readonly headerBlocks: HeaderBlockAssembler;
  private highestStreamId = 0;
  private peerSettingsSeen = false;
  private recvWindow = DEFAULT_WINDOW_SIZE;
  private recvUnacked = 0;
  private goawaySent = false;
  private peerGoingAway = false;
  private closed = false;
  private readonly keepalive: NodeJS.Timeout;
  private pingDeadline?: NodeJS.Timeout;

  constructor(
    private readonly socket: Socket,
    private readonly options: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.writer = new SocketWriter(socket, () => this.sender.frameWaiting());
    this.sender = new AnswerSender(this.writer, (stream) => this.finishLocal(stream));
    this.headerBlocks = new HeaderBlockAssembler(options.maxHeaderListBytes + LOCAL_HEADER_TABLE_SIZE);
    this.reader = new FrameReader(LOCAL_MAX_FRAME_SIZE, (type, flags, id, payload) => this.onFrame(type, flags, id, payload));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    // A reset or broken socket is followed by 'close', which is where the streams end.
    socket.on('error', () => undefined);
    socket.on('close', () => this.onSocketClose());
    socket.on('drain', () => {
      this.writer.flush();
      // 'drain': the socket's backlog is written; a reader paused for it goes on.
      if (this.socket.isPaused()) this.socket.resume();
    });
    const settings = Buffer.allocUnsafe(18);
    [[Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams], [Setting.INITIAL_WINDOW_SIZE, options.streamWindowBytes], [Setting.MAX_HEADER_LIST_SIZE, options.maxHeaderListBytes]].forEach(([id, value], i) => {
      settings.writeUInt16BE(id, i * 6);
      settings.writeUInt32BE(value, i * 6 + 2);
    });
    this.writer.queue(frame(FrameType.SETTINGS, 0, 0, settings));
    this.grantConnectionWindow(options.connectionWindowBytes - DEFAULT_WINDOW_SIZE);
    this.keepalive = setInterval(() => this.ping(), options.keepaliveTimeMs);
    this.keepalive.unref();
  }

  /** Graceful close: GOAWAY naming the last stream taken; streams in flight finish, then the socket closes. */
  close(): void {
    if (this.closed) return;
    if (!this.goawaySent) this.goAway(ErrorCode.NO_ERROR, '');
    this.writer.flush();
    this.endIfIdle();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // --- what streams ask of the connection (StreamOwner) ---

  sendHeaderBlock(stream: Http2ServerStream, block: Buffer, endStream: boolean): void {
    this.sender.headerBlock(stream, block, endStream);
  }

  sendWhole(stream: Http2ServerStream, headers: Buffer, prefix: Buffer, body: Buffer, trailers: Buffer): boolean {
    return this.sender.whole(stream, headers, prefix, body, trailers);
  }

  pump(stream: Http2ServerStream): void {
    this.sender.pump(stream);
  }

  resetStream(stream: Http2ServerStream, code: number): void {
    this.sendReset(stream.id, code);
    this.forget(stream);
  }

  // --- receiving ---

  private onBytes(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.fail(err);
    }
    this.writer.flush();
    // A client that sends (PINGs, resets, requests) without reading what they cause is not read either until it does.
    if (this.writer.socketBacklog > PAUSE_READING_ABOVE_BYTES) this.socket.pause();
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.closed) return;
    this.headerBlocks.checkFrame(type);
    if (!this.peerSettingsSeen && (type !== FrameType.SETTINGS || flags & Flag.ACK)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the client preface is not followed by SETTINGS');
    try {
      switch (type) {
        case FrameType.DATA:
          return this.onData(flags, id, payload);
        case FrameType.HEADERS:
        case FrameType.CONTINUATION: {
          const block = type === FrameType.HEADERS ? this.headerBlocks.headers(flags, id, payload) : this.headerBlocks.continuation(flags, id, payload);
          return block && this.onHeaderBlock(block.streamId, block.endStream, block.selfDependent, block.block);
        }
        case FrameType.PRIORITY:
          if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
          if (payload.length !== 5) throw new StreamError(id, ErrorCode.FRAME_SIZE_ERROR, 'PRIORITY frame not 5 octets');
          return;
        case FrameType.RST_STREAM:
          return this.onReset(id, payload);
        case FrameType.SETTINGS:
          return this.onSettings(flags, id, payload);
        case FrameType.PUSH_PROMISE:
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
        case FrameType.PING:
          return this.onPing(flags, id, payload);
        case FrameType.GOAWAY:
          if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
          if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 octets');
          this.peerGoingAway = true;
          return this.endIfIdle();
        case FrameType.WINDOW_UPDATE:
          return this.onWindowUpdate(id, payload);
        default:
          return; // unknown frame types are ignored (RFC 9113 5.5)
      }
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      this.sendReset(err.streamId, err.code);
      const stream = this.streams.get(err.streamId);
      if (stream) this.forget(stream);
    }
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    const length = payload.length;
    if (length > this.recvWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} octets over the connection window of ${this.recvWindow}`);
    this.recvWindow -= length;
    this.recvUnacked += length;
    if (this.recvUnacked >= this.options.connectionWindowBytes / 4) this.grantConnectionWindow(0);
    const stream = this.streams.get(id);
    if (!stream || stream.remoteEnded) {
      if (id > this.highestStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
      if (stream) throw new StreamError(id, ErrorCode.STREAM_CLOSED, `DATA on stream ${id} after its END_STREAM`);
      if (this.resetByUs.has(id)) return;
      throw new ConnectionError(ErrorCode.STREAM_CLOSED, `DATA on closed stream ${id}`);
    }
    if (length > stream.recvWindow) throw new StreamError(id, ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} octets over the stream window of ${stream.recvWindow}`);
    stream.recvWindow -= length;
    const data = unpadded(flags, payload);
    if (flags & Flag.END_STREAM) stream.remoteEnded = true;
    if (data.length > 0) stream.listener.onData(data);
    if (stream.closed) return;
    if (stream.remoteEnded) return stream.listener.onEnd();
    stream.recvUnacked += length;
    if (stream.recvUnacked >= this.options.streamWindowBytes / 4) {
      this.writer.queue(uint32Frame(FrameType.WINDOW_UPDATE, id, stream.recvUnacked));
      stream.recvWindow += stream.recvUnacked;
      stream.recvUnacked = 0;
    }
  }

  private onHeaderBlock(id: number, endStream: boolean, selfDependent: boolean, block: Buffer): void {
    let decoded;
    try {
      decoded = this.decoder.decode(block, this.options.maxHeaderListBytes);
    } catch (err) {
      if (err instanceof CompressionError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    if (id % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on even stream ${id} (clients open odd streams)`);
    const existing = this.streams.get(id);
    if (existing) {
      if (existing.remoteEnded) throw new StreamError(id, ErrorCode.STREAM_CLOSED, `HEADERS on stream ${id} after its END_STREAM`);
      if (!endStream) throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, `trailers on stream ${id} without END_STREAM`);
      existing.remoteEnded = true;
      return existing.listener.onEnd();
    }
    if (id <= this.highestStreamId) {
      if (this.resetByUs.has(id)) return;
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS opening stream ${id}, not above the last opened stream ${this.highestStreamId}`);
    }
    this.highestStreamId = id;
    // After our GOAWAY no stream is taken (the client retries it elsewhere).
    if (this.goawaySent) return;
    if (selfDependent) throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, `stream ${id} depends on itself`);
    if (this.streams.size >= this.options.maxConcurrentStreams) throw new StreamError(id, ErrorCode.REFUSED_STREAM, `over ${this.options.maxConcurrentStreams} concurrent streams`);
    const malformed = decoded.oversized ? undefined : malformedRequest(decoded.headers, decoded.names);
    if (malformed) throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, `malformed request: ${malformed}`);
    const stream = new Http2ServerStream(this, id, this.sender.peerInitialWindow, this.options.streamWindowBytes);
    stream.remoteEnded = endStream;
    this.streams.set(id, stream);
    if (decoded.oversized) return stream.respond(HEADER_LIST_TOO_LARGE, true);
    this.events.onStream(stream, decoded.headers);
    if (endStream && !stream.closed) stream.listener.onEnd();
  }

  private onReset(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM not 4 octets');
    if (id === 0 || id > this.highestStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on ${id === 0 ? 'stream 0' : `idle stream ${id}`}`);
    const stream = this.streams.get(id);
    if (stream) this.forget(stream);
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS payload not a multiple of 6 octets');
    this.peerSettingsSeen = true;
    this.sender.applySettings(payload, this.streams.values());
    this.writer.queue(frame(FrameType.SETTINGS, Flag.ACK, 0));
  }
  private onPing(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
    if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING not 8 octets');
    if (!(flags & Flag.ACK)) return this.writer.queue(frame(FrameType.PING, Flag.ACK, 0, payload));
    clearTimeout(this.pingDeadline);
    this.pingDeadline = undefined;
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE not 4 octets');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) return this.sender.windowUpdate(increment);
    if (id > this.highestStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${id}`);
    const stream = this.streams.get(id);
    if (stream) this.sender.windowUpdate(increment, stream);
  }

  // --- sending and closing ---

  /** Our side of the stream is done: it leaves the connection (reset with NO_ERROR when the client is still sending). */
  private finishLocal(stream: Http2ServerStream): void {
    if (!stream.remoteEnded) this.sendReset(stream.id, ErrorCode.NO_ERROR);
    this.forget(stream);
  }

  private forget(stream: Http2ServerStream): void {
    this.streams.delete(stream.id);
    this.sender.forget(stream);
    stream.markClosed();
    this.endIfIdle();
  }

  private sendReset(id: number, code: number): void {
    this.writer.queue(uint32Frame(FrameType.RST_STREAM, id, code));
    this.resetByUs.add(id);
    if (this.resetByUs.size > REMEMBERED_RESETS) this.resetByUs.delete(this.resetByUs.values().next().value as number);
  }

  private grantConnectionWindow(extra: number): void {
    const increment = this.recvUnacked + extra;
    if (increment <= 0) return;
    this.writer.queue(uint32Frame(FrameType.WINDOW_UPDATE, 0, increment));
    this.recvWindow += increment;
    this.recvUnacked = 0;
  }

  private ping(): void {
    if (this.closed || this.pingDeadline) return;
    this.writer.queue(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    // No answer within the timeout: the peer is gone without closing.
    this.pingDeadline = setTimeout(() => this.socket.destroy(), this.options.keepaliveTimeoutMs);
    this.pingDeadline.unref();
  }

  private goAway(code: number, message: string): void {
    this.writer.queue(goawayFrame(this.highestStreamId, code, message));
    this.goawaySent = true;
  }

  private fail(err: unknown): void {
    const error = err instanceof ConnectionError ? err : new ConnectionError(ErrorCode.INTERNAL_ERROR, err instanceof Error ? err.message : String(err));
    this.events.onError(error);
    if (this.closed) return;
    this.goAway(error.code, error.message);
    this.endSocket();
  }

  private endIfIdle(): void {
    if ((this.goawaySent || this.peerGoingAway) && this.streams.size === 0 && !this.closed) this.endSocket();
  }

  /** Closes after what is queued (GOAWAY last) is written; streams still open end here. */
  private endSocket(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stream of [...this.streams.values()]) this.forget(stream);
    this.writer.endAfterFlush();
  }

  private onSocketClose(): void {
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.pingDeadline);
    for (const stream of [...this.streams.values()]) this.forget(stream);
    this.writer.discard();
    this.events.onClose();
  }
}
