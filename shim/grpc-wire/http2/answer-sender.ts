// The sending half of a connection's flow control (RFC 9113 5.2, 6.9): the
// peer's settings that shape what we send (MAX_FRAME_SIZE,
// INITIAL_WINDOW_SIZE), the connection and stream send windows, and the
// framing of queued answers into DATA frames as far as both windows, the
// peer's frame size and the socket's backlog allow. A stream held back stays
// waiting and goes on at the next flush after a WINDOW_UPDATE or SETTINGS.
import type { SocketWriter } from './socket-writer';
import type { Http2ServerStream } from './stream';
import {
  ConnectionError, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW_SIZE, ErrorCode, FRAME_HEADER_LENGTH, Flag, FrameType, LARGEST_MAX_FRAME_SIZE,
  LARGEST_WINDOW_SIZE, Setting, StreamError, frame, headerBlockFrames, writeFrameHeader,
} from './frames';

/** DATA is framed only while the socket holds less than this unsent. */
const SOCKET_BUDGET_BYTES = 1 << 20;
/** HPACK dynamic table size update to 0 (RFC 7541 6.3): 001 and a 5-bit prefix integer. */
const TABLE_SIZE_ZERO = Buffer.from([0x20]);

export class AnswerSender {
  /** What the peer's SETTINGS said (defaults until then); its initial window is each new stream's send window. */
  peerInitialWindow = DEFAULT_WINDOW_SIZE;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW_SIZE;
  /**
   * The peer's SETTINGS named HEADER_TABLE_SIZE: its decoder may now insist (nghttp2 does, RFC 7541 4.2) that
   * our next header block opens with a table size update. We never use the table, so the update says 0.
   */
  private tableSizeUpdateDue = false;
  /** Streams with answer bytes or an end not yet framed. */
  private readonly waiting = new Set<Http2ServerStream>();

  constructor(
    private readonly writer: SocketWriter,
    /** Our END_STREAM for `stream` is queued: the connection closes the stream. */
    private readonly localEnded: (stream: Http2ServerStream) => void,
  ) {}

  /** Queues a header block (HEADERS, then CONTINUATION past the peer's frame size). */
  headerBlock(stream: Http2ServerStream, block: Buffer, endStream: boolean): void {
    if (this.tableSizeUpdateDue) {
      this.tableSizeUpdateDue = false;
      block = Buffer.concat([TABLE_SIZE_ZERO, block]);
    }
    for (const part of headerBlockFrames(stream.id, block, endStream, this.peerMaxFrameSize)) this.writer.queue(part);
    if (endStream) this.localEnded(stream);
  }

  /**
   * A whole answer at once: a header block, one DATA payload (`prefix`, then `body`) and a trailer block with
   * END_STREAM, built as three frames in one buffer: the common unary answer costs one allocation and none of the
   * stream queue's steps. Only when all of it may go now (both windows, the peer's frame size, the socket's budget,
   * no table size update due); otherwise nothing is sent and false returned, for the caller's general path.
   */
  whole(stream: Http2ServerStream, headers: Buffer, prefix: Buffer, body: Buffer, trailers: Buffer): boolean {
    const dataLength = prefix.length + body.length;
    const maxFrame = this.peerMaxFrameSize;
    if (
      this.tableSizeUpdateDue || dataLength > maxFrame || headers.length > maxFrame || trailers.length > maxFrame ||
      dataLength > stream.sendWindow || dataLength > this.sendWindow ||
      dataLength > SOCKET_BUDGET_BYTES - this.writer.socketBacklog - this.writer.queuedBytes
    ) return false;
    const id = stream.id;
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER_LENGTH + headers.length + dataLength + trailers.length);
    writeFrameHeader(out, 0, headers.length, FrameType.HEADERS, Flag.END_HEADERS, id);
    let at = FRAME_HEADER_LENGTH;
    // TypedArray set, not Buffer copy: a builtin, without copy()'s argument checks in JavaScript.
    out.set(headers, at);
    at += headers.length;
    writeFrameHeader(out, at, dataLength, FrameType.DATA, 0, id);
    at += FRAME_HEADER_LENGTH;
    out.set(prefix, at);
    at += prefix.length;
    out.set(body, at);
    at += body.length;
    writeFrameHeader(out, at, trailers.length, FrameType.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, id);
    out.set(trailers, at + FRAME_HEADER_LENGTH);
    stream.sendWindow -= dataLength;
    this.sendWindow -= dataLength;
    stream.localEnded = true;
    this.writer.queue(out);
    this.localEnded(stream);
    return true;
  }

  /** `stream` has data or its end queued: framed at the next flush, so a message's parts and the trailers after it travel together. */
  pump(stream: Http2ServerStream): void {
    this.waiting.add(stream);
    this.writer.scheduleFlush();
  }

  forget(stream: Http2ServerStream): void {
    this.waiting.delete(stream);
  }

  /** Called by the writer before each write. */
  frameWaiting(): void {
    // Usually none: a unary answer goes whole (whole()); no iterator made for an empty set.
    if (this.waiting.size === 0) return;
    for (const stream of this.waiting) this.frameData(stream);
  }

  /** A SETTINGS frame's payload from the peer; `streams` are the open ones, whose send windows move with INITIAL_WINDOW_SIZE. */
  applySettings(payload: Buffer, streams: Iterable<Http2ServerStream>): void {
    for (let at = 0; at < payload.length; at += 6) {
      const setting = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (setting === Setting.ENABLE_PUSH && value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
      if (setting === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > LARGEST_MAX_FRAME_SIZE) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
        this.peerMaxFrameSize = value;
      }
      if (setting === Setting.INITIAL_WINDOW_SIZE) {
        if (value > LARGEST_WINDOW_SIZE) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value}`);
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of streams) {
          stream.sendWindow += delta;
          if (stream.sendWindow > LARGEST_WINDOW_SIZE) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, `stream ${stream.id}'s window over 2^31-1`);
        }
      }
      if (setting === Setting.HEADER_TABLE_SIZE) this.tableSizeUpdateDue = true;
      // The rest are advisory (MAX_HEADER_LIST_SIZE: our answers' blocks are small) or unknown.
    }
    this.writer.scheduleFlush();
  }

  /** A WINDOW_UPDATE's increment, for the connection (`stream` undefined) or a stream. */
  windowUpdate(increment: number, stream?: Http2ServerStream): void {
    if (!stream) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.sendWindow += increment;
      if (this.sendWindow > LARGEST_WINDOW_SIZE) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window over 2^31-1');
      return this.writer.scheduleFlush();
    }
    if (increment === 0) throw new StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE of 0 on stream ${stream.id}`);
    stream.sendWindow += increment;
    if (stream.sendWindow > LARGEST_WINDOW_SIZE) throw new StreamError(stream.id, ErrorCode.FLOW_CONTROL_ERROR, `stream ${stream.id}'s window over 2^31-1`);
    this.pump(stream);
  }

  /** Frames what `stream` may send now; it stays waiting while the windows hold some of it back. */
  private frameData(stream: Http2ServerStream): void {
    if (stream.closed) return;
    while (stream.queuedBytes > 0) {
      const room = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrameSize, SOCKET_BUDGET_BYTES - this.writer.socketBacklog - this.writer.queuedBytes);
      if (room <= 0) return;
      const data = stream.takeData(room);
      stream.sendWindow -= data.length;
      this.sendWindow -= data.length;
      const last = stream.queuedBytes === 0 && stream.localEnded && !stream.trailers;
      const header = Buffer.allocUnsafe(9);
      writeFrameHeader(header, 0, data.length, FrameType.DATA, last ? Flag.END_STREAM : 0, stream.id);
      this.writer.queue(header);
      this.writer.queue(data);
      if (last) {
        this.waiting.delete(stream);
        return this.localEnded(stream);
      }
    }
    this.waiting.delete(stream);
    if (!stream.localEnded) return;
    if (stream.trailers) return this.headerBlock(stream, stream.trailers, true);
    this.writer.queue(frame(FrameType.DATA, Flag.END_STREAM, stream.id));
    this.localEnded(stream);
  }
}
