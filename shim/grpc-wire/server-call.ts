// One call on the wire: its deadline, its cancellation, and how its answer
// goes out. A unary answer is a HEADERS frame, one DATA message and the
// trailers (grpc-status, grpc-message), handed to the transport together so
// they leave in one socket write; an error with nothing sent before it is
// "trailers-only": one HEADERS frame carrying the status and END_STREAM.
// The header blocks that never change are HPACK-encoded once.
import type { HeaderList } from './http2/hpack-decoder';
import { encodeHeaderBlock } from './http2/hpack-encoder';
import type { Http2ServerStream } from './http2/stream';
import { GrpcCode, type GrpcStatus } from './status-codes';
import { FRAME_HEADER_BYTES, frameHeader, framedMessage } from './message-frames';
import { encodeGrpcMessage } from './status-message';
import type { DeadlineEntry, Deadlines } from './deadlines';

/** Messages up to this size are framed with one copy and written at once; larger ones are written header and body apart. */
const COPY_FRAME_BELOW_BYTES = 64 * 1024;

const RESPONSE_FIELDS: ReadonlyArray<readonly [string, string]> = [
  [':status', '200'],
  ['content-type', 'application/grpc'],
  ['grpc-accept-encoding', 'identity,deflate,gzip'],
];
const RESPONSE_HEADERS = encodeHeaderBlock(RESPONSE_FIELDS);
const OK_TRAILERS = encodeHeaderBlock(statusFields({ code: GrpcCode.OK, details: '' }));

function statusFields(status: GrpcStatus): Array<readonly [string, string]> {
  return [
    ['grpc-status', String(status.code)],
    ['grpc-message', encodeGrpcMessage(status.details)],
  ];
}

/** A trailers-only answer's one header block: the response headers and the status together. */
export function trailersOnlyBlock(status: GrpcStatus): Buffer {
  return encodeHeaderBlock([...RESPONSE_FIELDS, ...statusFields(status)]);
}

function trailersBlock(status: GrpcStatus): Buffer {
  return status.code === GrpcCode.OK && status.details === '' ? OK_TRAILERS : encodeHeaderBlock(statusFields(status));
}

/**
 * A unary answer's gRPC message header, filled per answer: respondWhole copies it before returning, so one buffer
 * serves every call (the general path, which queues what it is given, frames its own).
 */
const wholePrefix = Buffer.alloc(FRAME_HEADER_BYTES);

export class ServerCall implements DeadlineEntry {
  /** True once the client went away, the deadline passed, or the server ended the call itself. */
  cancelled = false;
  /** When the deadline passes (Deadlines' clock), when one was armed. */
  deadlineAt = 0;
  private ended = false;
  private headersSent = false;
  private abort?: AbortController;
  private cancelListeners?: Array<() => void>;
  private deadlines?: Deadlines;

  constructor(
    readonly stream: Http2ServerStream,
    /** The method's path, /package.Service/Method. */
    readonly path: string,
    readonly headers: HeaderList,
    private readonly maxSendMessageBytes: number,
  ) {}

  /** Aborted when the call is cancelled; made on first use (most calls never ask). */
  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.cancelled) this.abort.abort();
    }
    return this.abort.signal;
  }

  /** Runs `listener` once when the call is cancelled (at once if it already is). */
  onCancel(listener: () => void): void {
    if (this.cancelled) return listener();
    (this.cancelListeners ??= []).push(listener);
  }

  /** Ends the call with DEADLINE_EXCEEDED after `ms` unless it ended before. */
  armDeadline(ms: number, deadlines: Deadlines): void {
    this.deadlines = deadlines;
    deadlines.add(this, ms);
  }

  /** The deadline passed (Deadlines). */
  expire(): void {
    this.deadlines = undefined;
    if (this.ended) return;
    this.end({ code: GrpcCode.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
    this.markCancelled();
  }

  /** The client went away (RST_STREAM, connection closed) before the call ended. */
  clientGone(): void {
    if (this.ended) return;
    this.ended = true;
    this.clearDeadline();
    this.markCancelled();
  }

  /** One message of a server stream. Resolves when another may follow (flow control); false when the call is over. */
  send(bytes: Buffer): Promise<boolean> | boolean {
    if (this.ended) return false;
    if (bytes.length > this.maxSendMessageBytes) {
      this.end(this.tooLarge(bytes.length));
      this.markCancelled();
      return false;
    }
    this.sendHeaders();
    if (this.write(bytes)) return true;
    return this.stream.drained().then(() => !this.ended);
  }

  /**
   * Ends the call with `status`, after `message` when given (a unary answer).
   * Returns whether the answer was handed to the transport while the call was live.
   */
  end(status: GrpcStatus, message?: Buffer): boolean {
    if (this.ended) return false;
    if (message && message.length > this.maxSendMessageBytes) {
      status = this.tooLarge(message.length);
      message = undefined;
    }
    this.ended = true;
    this.clearDeadline();
    const stream = this.stream;
    if (stream.closed) return false;
    if (!this.headersSent) {
      if (!message) {
        stream.respond(trailersOnlyBlock(status), true);
        return status.code === GrpcCode.OK;
      }
      // The common unary answer: headers, message and trailers framed in one buffer when the windows let it all go.
      const length = message.length;
      wholePrefix[1] = length >>> 24;
      wholePrefix[2] = (length >>> 16) & 0xff;
      wholePrefix[3] = (length >>> 8) & 0xff;
      wholePrefix[4] = length & 0xff;
      if (stream.respondWhole(RESPONSE_HEADERS, wholePrefix, message, trailersBlock(status))) {
        this.headersSent = true;
        return true;
      }
    }
    this.sendHeaders();
    if (message) this.write(message);
    stream.end(trailersBlock(status));
    return true;
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, false);
  }

  private write(bytes: Buffer): boolean {
    if (bytes.length + FRAME_HEADER_BYTES <= COPY_FRAME_BELOW_BYTES) return this.stream.write(framedMessage(bytes));
    this.stream.write(frameHeader(bytes.length));
    return this.stream.write(bytes);
  }

  private tooLarge(length: number): GrpcStatus {
    return { code: GrpcCode.RESOURCE_EXHAUSTED, details: `response message of ${length} bytes is larger than the limit of ${this.maxSendMessageBytes} (grpc.max_send_message_bytes)` };
  }

  private clearDeadline(): void {
    if (!this.deadlines) return;
    this.deadlines.delete(this);
    this.deadlines = undefined;
  }

  private markCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.abort?.abort();
    const listeners = this.cancelListeners;
    this.cancelListeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }
}
