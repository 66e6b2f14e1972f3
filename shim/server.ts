// The CRI gRPC server: registers every RuntimeService and ImageService method
// on berth's own gRPC server (grpc-wire/), wraps the handlers a group
// provides (request decoding, metrics, logging, the mapping of model errors to
// gRPC codes), and answers UNIMPLEMENTED (naming the method) for the rest.
// Socket ownership is checked before binding.
import type * as grpc from '@grpc/grpc-js';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { criServiceDefinitions } from '../cri-proto';
import { describeError, invalidArgument, unimplemented } from '../runtime/errors';
import type { CallInfo, CriHandlers, CriMethod, ResponseSink } from './handler';
import { statusName, toGrpcStatus } from './grpc-status';
import type { Logger } from './logger';
import type { BerthMetrics } from './metrics';
import { responseBytes } from './list-encoding';
import { GrpcServer } from './grpc-wire/grpc-server';
import type { ServerCall } from './grpc-wire/server-call';
import { GrpcCode } from './grpc-wire/status-codes';

export interface CriServerOptions {
  socketPath: string;
  maxRecvMessageBytes: number;
  maxSendMessageBytes: number;
  log: Logger;
  metrics: BerthMetrics;
  handlers: CriHandlers;
}

type AnyUnary = (request: unknown, call: CallInfo) => Promise<unknown>;
type AnyStreaming = (request: unknown, sink: ResponseSink<unknown>, call: CallInfo) => Promise<void>;

const OK = { code: GrpcCode.OK, details: '' };

let callSequence = 0;

/** What a handler sees of its call: the wire call behind CallInfo, with the delivery promise made only when asked. */
class HandlerCall implements CallInfo {
  readonly id = ++callSequence;
  private deliveredValue?: boolean;
  private deliveredPromise?: Promise<boolean>;
  private settleDelivered?: (value: boolean) => void;

  constructor(
    readonly method: CriMethod,
    readonly wire: ServerCall,
    /** process.hrtime.bigint() when the call was handed over. */
    readonly started: bigint,
  ) {}

  cancelled(): boolean {
    return this.wire.cancelled;
  }

  get signal(): AbortSignal {
    return this.wire.signal;
  }

  get delivered(): Promise<boolean> {
    return (this.deliveredPromise ??=
      this.deliveredValue !== undefined ? Promise.resolve(this.deliveredValue) : new Promise<boolean>((resolve) => (this.settleDelivered = resolve)));
  }

  settle(value: boolean): void {
    this.deliveredValue = value;
    this.settleDelivered?.(value);
  }
}

/**
 * The reads a kubelet repeats with the same request (its relist's filters, Version's version, a status of the same
 * id): a request of up to REPEATED_REQUEST_BYTES equal to the method's previous one is the previous decoded (frozen)
 * object, not decoded again. Only reads: their handlers never change a request.
 */
const REPEATED_REQUEST_METHODS = new Set(['Version', 'ListPodSandbox', 'ListContainers', 'ListImages', 'ListPodSandboxStats', 'ListContainerStats', 'PodSandboxStatus', 'ContainerStatus', 'ImageStatus']);
const REPEATED_REQUEST_BYTES = 256;

/** `value` and every object in it frozen (a decoded message: plain objects and arrays, no cycles). */
function deepFrozen<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFrozen(inner);
    Object.freeze(value);
  }
  return value;
}

/** Per-method accounting: a call's count, duration, failure code and log lines. */
function accounting(method: string, options: CriServerOptions): (call: HandlerCall, err: unknown) => void {
  const { log, metrics } = options;
  const meter = metrics.rpcMeter(method);
  return (call, err) => {
    const elapsed = Number(process.hrtime.bigint() - call.started) / 1e9;
    meter.ended(elapsed);
    if (err === undefined) {
      if (log.isLevelEnabled('debug')) log.debug({ rpc: method, call: call.id, ms: +(elapsed * 1000).toFixed(3) }, 'rpc done');
      return;
    }
    const st = toGrpcStatus(err);
    const code = statusName(st.code);
    metrics.rpcErrors.inc({ method, code });
    const level = st.code === GrpcCode.INTERNAL || st.code === GrpcCode.UNKNOWN ? 'error' : 'warn';
    log[level]({ rpc: method, call: call.id, code, ms: +(elapsed * 1000).toFixed(3), err: st.details }, 'rpc failed');
  };
}

/**
 * Registers `service`'s methods on `server`, each wrapped around its handler (or UNIMPLEMENTED). What a call runs
 * is made once per method; per call there are the call object and the two callbacks of its handler's promise.
 */
function serveService(server: GrpcServer, service: grpc.ServiceDefinition, options: CriServerOptions): void {
  const handlers = options.handlers as Record<string, AnyUnary | AnyStreaming | undefined>;
  const { log, metrics } = options;
  for (const [method, spec] of Object.entries(service)) {
    const handler = handlers[method];
    const finish = accounting(method, options);
    const meter = metrics.rpcMeter(method);
    const streaming = spec.responseStream;
    let emptyRequest: unknown;
    const keepsRepeated = REPEATED_REQUEST_METHODS.has(method);
    let lastBytes: Buffer | undefined;
    let lastRequest: unknown;
    const decode = (bytes: Buffer): unknown => {
      if (!handler) throw unimplemented(`${method} is not implemented by berth`);
      // An empty message (Status, ListImages: every field at its default) decodes to the same object every time:
      // decoded once and frozen, so no handler can change what the next call gets.
      if (bytes.length === 0) return (emptyRequest ??= deepFrozen(spec.requestDeserialize(bytes)));
      const keep = keepsRepeated && bytes.length <= REPEATED_REQUEST_BYTES;
      if (keep && lastBytes !== undefined && bytes.equals(lastBytes)) return lastRequest;
      let request: unknown;
      try {
        request = spec.requestDeserialize(bytes);
      } catch (err) {
        throw invalidArgument(`request: not a valid ${method} request message (${describeError(err)})`);
      }
      if (keep) {
        // A copy: the bytes are a view of the socket's read.
        lastBytes = Buffer.from(bytes);
        lastRequest = deepFrozen(request);
      }
      return request;
    };
    const encode = (response: unknown): Buffer => responseBytes(response, spec.responseSerialize as (value: unknown) => Buffer);
    const fail = (call: HandlerCall, err: unknown): void => {
      finish(call, err);
      const st = toGrpcStatus(err);
      call.wire.end({ code: st.code, details: st.details });
      call.settle(false);
    };
    const answer = (call: HandlerCall, response: unknown): void => {
      let bytes: Buffer | undefined;
      try {
        bytes = streaming ? undefined : encode(response);
      } catch (err) {
        return fail(call, err);
      }
      finish(call, undefined);
      // A cancelled call (deadline passed, client gone) sends nothing.
      call.settle(call.wire.end(OK, bytes));
    };

    server.handle(spec.path, (wire, bytes) => {
      const call = new HandlerCall(method as CriMethod, wire, process.hrtime.bigint());
      meter.called();
      if (log.isLevelEnabled('debug')) log.debug({ rpc: method, call: call.id }, 'rpc start');
      let result: Promise<unknown>;
      try {
        const request = decode(bytes);
        result = streaming
          ? (handler as AnyStreaming)(request, { cancelled: () => wire.cancelled, write: async (message) => void (await wire.send(encode(message))) }, call)
          : (handler as AnyUnary)(request, call);
      } catch (err) {
        return fail(call, err);
      }
      result.then(
        (response) => answer(call, response),
        (err: unknown) => fail(call, err),
      );
    });
  }
}

/** Resolves true when something accepts connections on the socket. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export class CriServer {
  private readonly server: GrpcServer;

  constructor(private readonly options: CriServerOptions) {
    this.server = new GrpcServer({
      maxRecvMessageBytes: options.maxRecvMessageBytes,
      maxSendMessageBytes: options.maxSendMessageBytes,
      // The kubelet keeps one connection open for the life of the node; ping it
      // so a half-dead peer is noticed instead of holding streams forever.
      keepaliveTimeMs: 2 * 60 * 1000,
      keepaliveTimeoutMs: 20 * 1000,
      onSessionError: (err) => options.log.warn({ err: describeError(err) }, 'CRI connection failed'),
    });
    const cri = criServiceDefinitions();
    for (const service of [cri.RuntimeService, cri.ImageService]) serveService(this.server, service, options);
  }

  /** Binds the unix socket (mode 0660), refusing when a live server already owns it. */
  async listen(): Promise<void> {
    const path = this.options.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
    if (await socketIsLive(path)) {
      throw new Error(`another server is already serving ${path}; refusing to take it over`);
    }
    try {
      unlinkSync(path);
      this.options.log.info({ socket: path }, 'removed stale socket');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot remove stale socket ${path}: ${describeError(err)}`);
    }
    await this.server.listen(path);
    chmodSync(path, 0o660);
  }

  /** Stops accepting calls and lets in-flight ones finish (bounded), then closes the socket. */
  async shutdown(graceMs = 10_000): Promise<void> {
    await this.server.close(graceMs);
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // already gone
    }
  }
}
