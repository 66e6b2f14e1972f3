// The shape of a CRI handler. Handlers are plain async functions of the decoded
// request; shim/server.ts wraps them with logging, metrics and the mapping of
// model errors to gRPC status codes, so each handler stays a few lines.
import type * as grpc from '@grpc/grpc-js';
import type { ImageServiceHandlers, RuntimeServiceHandlers } from '../cri-proto';
import type { PreEncodedResponse } from './list-encoding';

// The generated handler interfaces extend an index signature; keep only the named RPCs.
type WithoutIndexSignature<T> = { [K in keyof T as string extends K ? never : K]: T[K] };
type AllGrpcHandlers = WithoutIndexSignature<RuntimeServiceHandlers & ImageServiceHandlers>;

type StreamingMethodOf<T> = {
  [K in keyof T]: T[K] extends grpc.handleServerStreamingCall<infer _Q, infer _R> ? K : never;
}[keyof T];

export type CriStreamingMethod = StreamingMethodOf<AllGrpcHandlers>;
export type CriUnaryMethod = Exclude<keyof AllGrpcHandlers, CriStreamingMethod>;
export type CriMethod = keyof AllGrpcHandlers;

export type RequestOf<M extends CriMethod> = AllGrpcHandlers[M] extends grpc.handleServerStreamingCall<infer Q, infer _R>
  ? Q
  : AllGrpcHandlers[M] extends grpc.handleUnaryCall<infer Q, infer _R>
    ? Q
    : never;

export type ResponseOf<M extends CriMethod> = AllGrpcHandlers[M] extends grpc.handleServerStreamingCall<infer _Q, infer R>
  ? R
  : AllGrpcHandlers[M] extends grpc.handleUnaryCall<infer _Q, infer R>
    ? R
    : never;

/** What a handler knows about the call it serves. */
export interface CallInfo {
  /** Sequence number of this call, for log correlation. */
  id: number;
  method: CriMethod;
  /** True once the client cancelled or the deadline passed. */
  cancelled(): boolean;
  /** Aborted when the client cancels or the deadline passes: the model stops what only that caller wanted. */
  signal: AbortSignal;
  /**
   * Unary calls: true once the answer was handed to the transport while the
   * call was still live, false when the call ended first (cancelled, deadline
   * passed) or failed. A result never delivered can be handed to a retry.
   */
  delivered: Promise<boolean>;
}

/** A server stream's output with backpressure: `write` resolves when the message may be followed by another. */
export interface ResponseSink<R> {
  write(message: R): Promise<void>;
  cancelled(): boolean;
}

/** A handler may answer bytes it encoded itself (list-encoding.ts). */
export type UnaryHandler<M extends CriUnaryMethod> = (request: RequestOf<M>, call: CallInfo) => Promise<ResponseOf<M> | PreEncodedResponse>;
export type StreamingHandler<M extends CriStreamingMethod> = (
  request: RequestOf<M>,
  sink: ResponseSink<ResponseOf<M>>,
  call: CallInfo,
) => Promise<void>;

/** Not an RPC: what a handler group has done once berthd serves (in the background; the daemon starts it). */
export const AFTER_SERVING = Symbol('after serving');

export type CriHandlers = { [M in CriUnaryMethod]?: UnaryHandler<M> } & { [M in CriStreamingMethod]?: StreamingHandler<M> } & {
  [AFTER_SERVING]?: () => Promise<void>;
};
