// A gRPC server on node:http2, written from the gRPC-over-HTTP/2 protocol
// description, for the one shape berth serves: calls with one request
// message, answered with one message (unary) or a stream of them. grpc-js's
// server spent about as much CPU per call as the rest of berth put together
// (interceptor chains, metadata objects, per-call event plumbing); this does
// the protocol's work and no more. grpc-js stays the client (tests, bench/)
// and the source of the generated service definitions.
import * as http2 from 'node:http2';
import { gunzip, inflate } from 'node:zlib';
import { ServerCall } from './server-call';
import { GrpcCode, type GrpcStatus } from './status-codes';
import { LONGEST_TIMER_MS, parseGrpcTimeout } from './grpc-timeout';
import { MessageReader, MessageTooLarge, type ReceivedMessage } from './message-frames';
import { encodeGrpcMessage } from './status-message';

/** Called once the request message is complete; the handler ends the call (ServerCall.end). */
export type CallHandler = (call: ServerCall, request: Buffer) => void;

export interface GrpcServerOptions {
  maxRecvMessageBytes: number;
  maxSendMessageBytes: number;
  /** Ping an idle connection this often, and drop it when the ping is not answered in keepaliveTimeoutMs. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Told about connection-level failures (a peer speaking garbage): nothing a call sees. */
  onSessionError?: (err: Error) => void;
}

export class GrpcServer {
  private readonly methods = new Map<string, CallHandler>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly server: http2.Http2Server;

  constructor(private readonly options: GrpcServerOptions) {
    // maxSessionMemory (MiB) bounds what nghttp2 buffers per connection; answers of up to the send limit must fit.
    const maxSessionMemory = Math.max(10, Math.ceil((options.maxSendMessageBytes * 2) / (1 << 20)));
    this.server = http2.createServer({ maxSessionMemory, settings: { initialWindowSize: 1 << 20 } });
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('sessionError', (err) => this.options.onSessionError?.(err));
  }

  /** Serves `path` (/package.Service/Method) with `handler`. */
  handle(path: string, handler: CallHandler): void {
    this.methods.set(path, handler);
  }

  listen(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops taking connections, asks every connection to finish its calls (GOAWAY), and cuts them after graceMs. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    const timer = setTimeout(() => {
      for (const session of this.sessions) session.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }

  private onSession(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('error', (err) => this.options.onSessionError?.(err));
    const keepalive = setInterval(() => {
      // No answer to the ping within the timeout: the peer is gone without closing.
      const deadPeer = setTimeout(() => session.destroy(), this.options.keepaliveTimeoutMs);
      deadPeer.unref();
      if (!session.ping(() => clearTimeout(deadPeer))) clearTimeout(deadPeer);
    }, this.options.keepaliveTimeMs);
    keepalive.unref();
    session.once('close', () => {
      clearInterval(keepalive);
      this.sessions.delete(session);
    });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // An error on one stream (the peer reset it mid-write) concerns that call only.
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'POST') {
      stream.respond({ ':status': 405, allow: 'POST' }, { endStream: true });
      stream.resume();
      return;
    }
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      stream.resume();
      return;
    }
    const path = headers[':path'] ?? '';
    const handler = this.methods.get(path);
    if (!handler) {
      refuse(stream, { code: GrpcCode.UNIMPLEMENTED, details: `unknown method ${path}` });
      return;
    }
    const call = new ServerCall(stream, path, headers, this.options.maxSendMessageBytes);
    stream.once('close', () => call.clientGone());
    const timeout = headers['grpc-timeout'];
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(String(timeout));
      if (ms === undefined) {
        call.end({ code: GrpcCode.INVALID_ARGUMENT, details: `grpc-timeout: "${String(timeout)}" is not a gRPC timeout (1-8 digits and one of H M S m u n)` });
        return;
      }
      if (ms <= LONGEST_TIMER_MS) call.armDeadline(ms);
    }
    const reader = new MessageReader(this.options.maxRecvMessageBytes);
    let message: ReceivedMessage | undefined;
    let refused = false;
    stream.on('data', (chunk: Buffer) => {
      if (refused) return;
      try {
        for (const received of reader.push(chunk)) {
          if (message) {
            refused = true;
            call.end({ code: GrpcCode.INVALID_ARGUMENT, details: `${path}: expected one request message, got more` });
            return;
          }
          message = received;
        }
      } catch (err) {
        refused = true;
        const tooLarge = err as MessageTooLarge;
        call.end({ code: GrpcCode.RESOURCE_EXHAUSTED, details: `request message of ${tooLarge.length} bytes is larger than the limit of ${tooLarge.limit} (grpc.max_recv_message_bytes)` });
      }
    });
    stream.once('end', () => {
      if (refused || call.cancelled) return;
      if (!message || !reader.atBoundary) {
        call.end({ code: GrpcCode.INVALID_ARGUMENT, details: reader.atBoundary ? `${path}: the request carried no message` : `${path}: the request ended inside a message` });
        return;
      }
      if (!message.compressed) return handler(call, message.bytes);
      decompress(headers['grpc-encoding'], message.bytes, this.options.maxRecvMessageBytes).then(
        (bytes) => {
          if (!call.cancelled) handler(call, bytes);
        },
        (status: GrpcStatus) => call.end(status),
      );
    });
  }
}

/** Trailers-only error answer for a stream with no call behind it. */
function refuse(stream: http2.ServerHttp2Stream, status: GrpcStatus): void {
  stream.respond(
    { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(status.code), 'grpc-message': encodeGrpcMessage(status.details) },
    { endStream: true },
  );
  // Whatever the client still sends is not read.
  stream.resume();
}

/** A compressed request's bytes, decompressed off the event loop; rejects with the status to answer. */
function decompress(encoding: string | string[] | undefined, bytes: Buffer, maxBytes: number): Promise<Buffer> {
  const name = typeof encoding === 'string' ? encoding : 'identity';
  const method = name === 'gzip' ? gunzip : name === 'deflate' ? inflate : undefined;
  if (!method) {
    const details = name === 'identity' ? 'a message is flagged compressed but the request names no grpc-encoding' : `grpc-encoding "${name}" is not supported (identity, deflate, gzip)`;
    return Promise.reject<Buffer>({ code: name === 'identity' ? GrpcCode.INVALID_ARGUMENT : GrpcCode.UNIMPLEMENTED, details });
  }
  return new Promise((resolve, reject) => {
    method(bytes, { maxOutputLength: maxBytes }, (err, out) => {
      if (!err) return resolve(out);
      const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
      reject({
        code: tooLarge ? GrpcCode.RESOURCE_EXHAUSTED : GrpcCode.INVALID_ARGUMENT,
        details: tooLarge ? `request message decompresses to more than the limit of ${maxBytes} bytes` : `request message is not valid ${name}: ${err.message}`,
      });
    });
  });
}
