// A gRPC server, written from the gRPC-over-HTTP/2 protocol description, for
// the one shape berth serves: calls with one request message, answered with
// one message (unary) or a stream of them. It runs on berth's own HTTP/2
// server transport (http2/, from RFC 9113 and RFC 7541) over node:net.
//
// Why not node:http2 (session 4's transport): per call, nghttp2's
// Http2Stream Duplex objects, header object conversions and stream events
// cost berthd ~220 us of CPU for a Version call against containerd's ~130,
// and a unary answer left in two socket writes (HEADERS+DATA, then the
// trailers), so the client woke and parsed twice. Here a unary answer is one
// write; bench/call-floor.ts (idle node, grpc-js client, load ~2.7): berthd
// CPU per Version call 220 -> 90 us, wall 0.42 -> 0.24 ms (containerd 0.31),
// the client's CPU 280 -> 160 us. Why not grpc-js's server (berthd's until
// session 4): interceptor chains, metadata objects and per-call event
// plumbing cost as much CPU per call as the rest of berth. grpc-js stays the
// client (tests, bench/) and the source of the generated service definitions.
import { createServer, type Server, type Socket } from 'node:net';
import { gunzip, inflate } from 'node:zlib';
import { Http2ServerConnection, type ConnectionOptions } from './http2/connection';
import type { HeaderList } from './http2/hpack-decoder';
import { encodeHeaderBlock } from './http2/hpack-encoder';
import type { Http2ServerStream, StreamListener } from './http2/stream';
import { ServerCall, trailersOnlyBlock } from './server-call';
import { GrpcCode, type GrpcStatus } from './status-codes';
import { LONGEST_TIMER_MS, parseGrpcTimeout } from './grpc-timeout';
import { FRAME_HEADER_BYTES, MessageReader, MessageTooLarge } from './message-frames';
import { Deadlines } from './deadlines';

/** Called once the request message is complete; the handler ends the call (ServerCall.end). */
export type CallHandler = (call: ServerCall, request: Buffer) => void;

export interface GrpcServerOptions {
  maxRecvMessageBytes: number;
  maxSendMessageBytes: number;
  /** Ping an idle connection this often, and drop it when the ping is not answered in keepaliveTimeoutMs. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Streams one connection may have open at once; more are refused (REFUSED_STREAM, the client retries). */
  maxConcurrentStreams?: number;
  /** Told about connection-level failures (a peer speaking garbage): nothing a call sees. */
  onSessionError?: (err: Error) => void;
}

const METHOD_NOT_ALLOWED = encodeHeaderBlock([[':status', '405'], ['allow', 'POST']]);
const UNSUPPORTED_MEDIA_TYPE = encodeHeaderBlock([[':status', '415']]);
/** Whatever the client still sends on a stream that is already answered. */
const DISCARD: StreamListener = { onData: () => undefined, onEnd: () => undefined, onClose: () => undefined };

export class GrpcServer {
  private readonly methods = new Map<string, CallHandler>();
  private readonly connections = new Set<Http2ServerConnection>();
  private readonly server: Server;
  private readonly connectionOptions: ConnectionOptions;
  private readonly deadlines = new Deadlines();

  constructor(private readonly options: GrpcServerOptions) {
    this.connectionOptions = {
      maxConcurrentStreams: options.maxConcurrentStreams ?? 1000,
      // Requests are small: a 1 MiB window lets any of them arrive without waiting for a WINDOW_UPDATE.
      streamWindowBytes: 1 << 20,
      connectionWindowBytes: 1 << 20,
      maxHeaderListBytes: 64 * 1024,
      keepaliveTimeMs: options.keepaliveTimeMs,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs,
    };
    this.server = createServer((socket) => this.onConnection(socket));
    // A failed accept (EMFILE) concerns that connection only; without a listener it would end the process.
    this.server.on('error', (err) => {
      if (this.server.listening) this.options.onSessionError?.(err);
    });
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
    for (const connection of this.connections) connection.close();
    const timer = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }

  private onConnection(socket: Socket): void {
    const connection: Http2ServerConnection = new Http2ServerConnection(socket, this.connectionOptions, {
      onStream: (stream, headers) => this.onStream(stream, headers),
      onError: (err) => this.options.onSessionError?.(err),
      onClose: () => this.connections.delete(connection),
    });
    this.connections.add(connection);
  }

  private onStream(stream: Http2ServerStream, headers: HeaderList): void {
    if (headers[':method'] !== 'POST') {
      stream.listener = DISCARD;
      return stream.respond(METHOD_NOT_ALLOWED, true);
    }
    const contentType = headers['content-type'];
    if (contentType === undefined || !contentType.startsWith('application/grpc')) {
      stream.listener = DISCARD;
      return stream.respond(UNSUPPORTED_MEDIA_TYPE, true);
    }
    const path = headers[':path'];
    const handler = this.methods.get(path);
    if (!handler) {
      stream.listener = DISCARD;
      return stream.respond(trailersOnlyBlock({ code: GrpcCode.UNIMPLEMENTED, details: `unknown method ${path}` }), true);
    }
    const call = new ServerCall(stream, path, headers, this.options.maxSendMessageBytes);
    const request = new CallRequest(call, handler, this.options.maxRecvMessageBytes);
    stream.listener = request;
    const timeout = headers['grpc-timeout'];
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(timeout);
      if (ms === undefined) {
        request.refused = true;
        call.end({ code: GrpcCode.INVALID_ARGUMENT, details: `grpc-timeout: "${timeout}" is not a gRPC timeout (1-8 digits and one of H M S m u n)` });
        return;
      }
      if (ms <= LONGEST_TIMER_MS) call.armDeadline(ms, this.deadlines);
    }
  }
}

/**
 * What a call's stream receives: its one request message, then its end, which hands the message to the handler.
 * A class, not closures made per call. A message that arrives whole in one DATA payload (the usual request) is
 * taken as it is; a MessageReader is made only for one cut across payloads, or for more bytes after it.
 */
class CallRequest implements StreamListener {
  refused = false;
  private message?: Buffer;
  private compressed = false;
  private reader?: MessageReader;

  constructor(
    private readonly call: ServerCall,
    private readonly handler: CallHandler,
    private readonly maxRecvMessageBytes: number,
  ) {}

  onData(chunk: Buffer): void {
    if (this.refused) return;
    if (!this.reader && !this.message && chunk.length >= FRAME_HEADER_BYTES) {
      const length = chunk.readUInt32BE(1);
      if (length === chunk.length - FRAME_HEADER_BYTES && length <= this.maxRecvMessageBytes) {
        this.compressed = chunk[0] !== 0;
        this.message = chunk.subarray(FRAME_HEADER_BYTES);
        return;
      }
    }
    const reader = (this.reader ??= new MessageReader(this.maxRecvMessageBytes));
    try {
      for (const received of reader.push(chunk)) {
        if (this.message) {
          this.refused = true;
          this.call.end({ code: GrpcCode.INVALID_ARGUMENT, details: `${this.call.path}: expected one request message, got more` });
          return;
        }
        this.message = received.bytes;
        this.compressed = received.compressed;
      }
    } catch (err) {
      this.refused = true;
      const tooLarge = err as MessageTooLarge;
      this.call.end({ code: GrpcCode.RESOURCE_EXHAUSTED, details: `request message of ${tooLarge.length} bytes is larger than the limit of ${tooLarge.limit} (grpc.max_recv_message_bytes)` });
    }
  }

  onEnd(): void {
    const call = this.call;
    if (this.refused || call.cancelled) return;
    const atBoundary = this.reader ? this.reader.atBoundary : true;
    const message = this.message;
    if (!message || !atBoundary) {
      call.end({ code: GrpcCode.INVALID_ARGUMENT, details: atBoundary ? `${call.path}: the request carried no message` : `${call.path}: the request ended inside a message` });
      return;
    }
    if (!this.compressed) return this.handler(call, message);
    decompress(call.headers['grpc-encoding'], message, this.maxRecvMessageBytes).then(
      (bytes) => {
        if (!call.cancelled) this.handler(call, bytes);
      },
      (status: GrpcStatus) => call.end(status),
    );
  }

  onClose(): void {
    this.call.clientGone();
  }
}

/** A compressed request's bytes, decompressed off the event loop; rejects with the status to answer. */
function decompress(encoding: string | undefined, bytes: Buffer, maxBytes: number): Promise<Buffer> {
  const name = encoding ?? 'identity';
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
