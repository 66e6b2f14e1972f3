// berth's own CRI client for tests and benchmarks: typed calls over a real
// @grpc/grpc-js connection to a unix socket.
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadCriPackage } from '../../cri-proto';
import type { ImageServiceDefinition, RuntimeServiceDefinition } from '../../cri-proto';

type WithoutIndexSignature<T> = { [K in keyof T as string extends K ? never : K]: T[K] };
type Definitions = WithoutIndexSignature<RuntimeServiceDefinition & ImageServiceDefinition>;
type AnyMethod = MethodDefinition<unknown, unknown, unknown, unknown>;

export type ClientMethod = keyof Definitions;
export type ClientRequest<M extends ClientMethod> = Definitions[M] extends MethodDefinition<infer Q, infer _A, infer _B, infer _C> ? Q : never;
export type ClientResponse<M extends ClientMethod> = Definitions[M] extends MethodDefinition<infer _A, infer _B, infer _C, infer R> ? R : never;

export interface CallOptions {
  /** Deadline in milliseconds from now (default 60 s). */
  timeoutMs?: number;
}

const IMAGE_METHODS = new Set(['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo', 'StreamImages']);

export class CriClient {
  private readonly runtime: grpc.Client;
  private readonly image: grpc.Client;

  constructor(readonly socketPath: string, options: grpc.ClientOptions = {}) {
    const cri = loadCriPackage().runtime.v1;
    const address = `unix:${socketPath}`;
    const credentials = grpc.credentials.createInsecure();
    const opts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, ...options };
    this.runtime = new cri.RuntimeService(address, credentials, opts);
    this.image = new cri.ImageService(address, credentials, opts);
  }

  private clientFor(method: string): { client: grpc.Client; definition: AnyMethod } {
    const cri = loadCriPackage().runtime.v1;
    const image = IMAGE_METHODS.has(method);
    const service = (image ? cri.ImageService.service : cri.RuntimeService.service) as unknown as Record<string, AnyMethod>;
    return { client: image ? this.image : this.runtime, definition: service[method] };
  }

  /** One unary call; rejects with the grpc ServiceError (code, details). */
  call<M extends ClientMethod>(method: M, request: ClientRequest<M>, options: CallOptions = {}): Promise<ClientResponse<M>> {
    const { client, definition } = this.clientFor(method);
    const deadline = new Date(Date.now() + (options.timeoutMs ?? 60_000));
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize as (value: unknown) => Buffer,
        definition.responseDeserialize as (value: Buffer) => unknown,
        request,
        new grpc.Metadata(),
        { deadline },
        (err, value) => (err ? reject(err) : resolve(value as ClientResponse<M>)),
      );
    });
  }

  /** A request as it goes on the wire (for tests that then change its bytes, e.g. to invalid UTF-8). */
  encode<M extends ClientMethod>(method: M, request: ClientRequest<M>): Buffer {
    return (this.clientFor(method).definition.requestSerialize as (value: unknown) => Buffer)(request);
  }

  /** One unary call with the request's bytes given as they are. */
  callEncoded<M extends ClientMethod>(method: M, bytes: Buffer, options: CallOptions = {}): Promise<ClientResponse<M>> {
    const { client, definition } = this.clientFor(method);
    const deadline = new Date(Date.now() + (options.timeoutMs ?? 60_000));
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        (value: Buffer) => value,
        definition.responseDeserialize as (value: Buffer) => unknown,
        bytes,
        new grpc.Metadata(),
        { deadline },
        (err, value) => (err ? reject(err) : resolve(value as ClientResponse<M>)),
      );
    });
  }

  /** A server-streaming call as an async iterator of messages. */
  stream<M extends ClientMethod>(method: M, request: ClientRequest<M>, options: CallOptions = {}): grpc.ClientReadableStream<ClientResponse<M>> {
    const { client, definition } = this.clientFor(method);
    const callOptions: grpc.CallOptions = options.timeoutMs ? { deadline: new Date(Date.now() + options.timeoutMs) } : {};
    return client.makeServerStreamRequest(
      definition.path,
      definition.requestSerialize as (value: unknown) => Buffer,
      definition.responseDeserialize as (value: Buffer) => ClientResponse<M>,
      request,
      new grpc.Metadata(),
      callOptions,
    );
  }

  /** Collects every message of a server stream. */
  async collect<M extends ClientMethod>(method: M, request: ClientRequest<M>, options: CallOptions = {}): Promise<ClientResponse<M>[]> {
    const out: ClientResponse<M>[] = [];
    for await (const message of this.stream(method, request, options)) out.push(message as ClientResponse<M>);
    return out;
  }

  close(): void {
    this.runtime.close();
    this.image.close();
  }
}

/** The gRPC status code of a rejected call (undefined when it was no gRPC error). */
export function grpcCode(err: unknown): grpc.status | undefined {
  return (err as grpc.ServiceError | undefined)?.code;
}
