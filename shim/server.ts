// The CRI gRPC server: registers every RuntimeService and ImageService method,
// wraps the handlers a group provides, and answers UNIMPLEMENTED (naming the
// method) for the rest. Socket ownership is checked before binding.
import * as grpc from '@grpc/grpc-js';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { loadCriPackage } from '../cri-proto';
import { describeError, unimplemented } from '../runtime/errors';
import type { CallInfo, CriHandlers, CriMethod, ResponseSink } from './handler';
import { statusName, toGrpcStatus } from './grpc-status';
import type { Logger } from './logger';
import type { BerthMetrics } from './metrics';
import { withPreEncodedResponses } from './list-encoding';
import { tolerantDefinition, undecodableRequest } from './request-decoding';

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

let callSequence = 0;

function serviceImplementation(
  definition: grpc.ServiceDefinition,
  options: CriServerOptions,
): grpc.UntypedServiceImplementation {
  const { log, metrics } = options;
  const handlers = options.handlers as Record<string, AnyUnary | AnyStreaming | undefined>;
  const impl: grpc.UntypedServiceImplementation = {};

  for (const [method, spec] of Object.entries(definition)) {
    const handler = handlers[method];
    const finish = (id: number, started: bigint, err: unknown): void => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.rpcSeconds.observe({ method }, seconds);
      if (err === undefined) {
        log.debug({ rpc: method, call: id, ms: +(seconds * 1000).toFixed(3) }, 'rpc done');
        return;
      }
      const st = toGrpcStatus(err);
      const code = statusName(st.code);
      metrics.rpcErrors.inc({ method, code });
      const level = st.code === grpc.status.INTERNAL || st.code === grpc.status.UNKNOWN ? 'error' : 'warn';
      log[level]({ rpc: method, call: id, code, ms: +(seconds * 1000).toFixed(3), err: st.details }, 'rpc failed');
    };

    if (spec.responseStream) {
      impl[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const id = ++callSequence;
        const started = process.hrtime.bigint();
        metrics.rpcTotal.inc({ method });
        log.debug({ rpc: method, call: id }, 'rpc start');
        const info: CallInfo = { id, method: method as CriMethod, cancelled: () => call.cancelled, signal: cancellationOf(call), delivered: Promise.resolve(false) };
        const refused = handler ? undecodableRequest(method, call.request) : unimplemented(`${method} is not implemented by berth`);
        if (refused) {
          finish(id, started, refused);
          call.emit('error', Object.assign(new Error(refused.message), toGrpcStatus(refused)));
          return;
        }
        const sink: ResponseSink<unknown> = {
          cancelled: () => call.cancelled,
          write: (message) =>
            new Promise<void>((resolve) => {
              if (call.cancelled || call.destroyed) return resolve();
              if (call.write(message)) return resolve();
              // A client that goes away never drains: stop waiting then too.
              const done = (): void => {
                call.off('drain', done);
                call.off('cancelled', done);
                call.off('close', done);
                resolve();
              };
              call.once('drain', done);
              call.once('cancelled', done);
              call.once('close', done);
            }),
        };
        (handler as AnyStreaming)(call.request, sink, info).then(
          () => {
            finish(id, started, undefined);
            if (!call.cancelled) call.end();
          },
          (err: unknown) => {
            finish(id, started, err);
            const st = toGrpcStatus(err);
            if (!call.cancelled) call.emit('error', Object.assign(new Error(st.details), st));
          },
        );
      };
      continue;
    }

    impl[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const id = ++callSequence;
      const started = process.hrtime.bigint();
      metrics.rpcTotal.inc({ method });
      log.debug({ rpc: method, call: id }, 'rpc start');
      const refused = handler ? undecodableRequest(method, call.request) : unimplemented(`${method} is not implemented by berth`);
      if (refused) {
        finish(id, started, refused);
        callback(toGrpcStatus(refused));
        return;
      }
      // The signal and the delivery promise are made only for the handlers that ask (most never do):
      // an AbortController and a listener per call were a visible share of a Version call's cost.
      let signal: AbortSignal | undefined;
      let delivered: Promise<boolean> | undefined;
      let deliveredValue: boolean | undefined;
      let settleDelivered: ((value: boolean) => void) | undefined;
      const settle = (value: boolean): void => {
        deliveredValue = value;
        settleDelivered?.(value);
      };
      const info: CallInfo = {
        id,
        method: method as CriMethod,
        cancelled: () => call.cancelled,
        get signal() {
          return (signal ??= cancellationOf(call));
        },
        get delivered() {
          return (delivered ??= deliveredValue !== undefined ? Promise.resolve(deliveredValue) : new Promise<boolean>((resolve) => (settleDelivered = resolve)));
        },
      };
      let result: Promise<unknown>;
      try {
        result = (handler as AnyUnary)(call.request, info);
      } catch (err) {
        result = Promise.reject(err);
      }
      result.then(
        (response) => {
          finish(id, started, undefined);
          // A cancelled call (deadline passed, client gone) sends nothing: grpc-js drops the answer.
          const live = !call.cancelled;
          callback(null, response);
          settle(live);
        },
        (err: unknown) => {
          finish(id, started, err);
          callback(toGrpcStatus(err));
          settle(false);
        },
      );
    };
  }
  return impl;
}

/** An AbortSignal aborted when the call is cancelled (by the client, or its deadline passing). */
function cancellationOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): AbortSignal {
  const abort = new AbortController();
  if (call.cancelled) abort.abort();
  else call.once('cancelled', () => abort.abort());
  return abort.signal;
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
  readonly server: grpc.Server;

  constructor(private readonly options: CriServerOptions) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': options.maxRecvMessageBytes,
      'grpc.max_send_message_length': options.maxSendMessageBytes,
      // The kubelet keeps one connection open for the life of the node; ping it
      // so a half-dead peer is noticed instead of holding streams forever.
      'grpc.keepalive_time_ms': 2 * 60 * 1000,
      'grpc.keepalive_timeout_ms': 20 * 1000,
      // Channelz bookkeeping runs on every call and nothing reads it.
      'grpc.enable_channelz': 0,
    });
    const cri = loadCriPackage().runtime.v1;
    for (const service of [cri.RuntimeService.service, cri.ImageService.service]) {
      this.server.addService(withPreEncodedResponses(tolerantDefinition(service)), serviceImplementation(service, options));
    }
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
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    chmodSync(path, 0o660);
  }

  /** Stops accepting calls and lets in-flight ones finish (bounded), then closes the socket. */
  async shutdown(graceMs = 10_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // already gone
    }
  }
}
