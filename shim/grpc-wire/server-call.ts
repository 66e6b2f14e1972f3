// One call on the wire: its deadline, its cancellation, and how its answer
// goes out. A unary answer is a HEADERS frame, one DATA message and the
// trailers (grpc-status, grpc-message); an error with nothing sent before it
// is "trailers-only": one HEADERS frame carrying the status and END_STREAM.
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { GrpcCode, type GrpcStatus } from './status-codes';
import { FRAME_HEADER_BYTES, frameHeader, framedMessage } from './message-frames';
import { encodeGrpcMessage } from './status-message';

/** Messages up to this size are framed with one copy and written at once; larger ones are written header and body apart. */
const COPY_FRAME_BELOW_BYTES = 64 * 1024;

export const RESPONSE_HEADERS = Object.freeze({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity,deflate,gzip' });

export class ServerCall {
  /** True once the client went away, the deadline passed, or the server ended the call itself. */
  cancelled = false;
  private ended = false;
  private headersSent = false;
  private abort?: AbortController;
  private cancelListeners?: Array<() => void>;
  private deadlineTimer?: NodeJS.Timeout;

  constructor(
    readonly stream: ServerHttp2Stream,
    /** The method's path, /package.Service/Method. */
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
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
  armDeadline(ms: number): void {
    this.deadlineTimer = setTimeout(() => {
      if (this.ended) return;
      this.end({ code: GrpcCode.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
      this.markCancelled();
    }, ms);
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
    return new Promise<boolean>((resolve) => {
      const stream = this.stream;
      const done = (): void => {
        stream.off('drain', done);
        stream.off('close', done);
        resolve(!this.ended);
      };
      stream.once('drain', done);
      stream.once('close', done);
    });
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
    if (stream.destroyed || stream.closed) return false;
    const trailers = { 'grpc-status': String(status.code), 'grpc-message': encodeGrpcMessage(status.details) };
    if (!this.headersSent && !message) {
      stream.respond({ ...RESPONSE_HEADERS, ...trailers }, { endStream: true });
      return status.code === GrpcCode.OK;
    }
    if (!this.headersSent) {
      this.headersSent = true;
      stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    }
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    if (message) this.write(message);
    stream.end();
    return true;
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
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
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
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
