// Requests that are no protobuf of their method's message: grpc-js answers a
// request its deserializer throws on with INTERNAL ("Error deserializing
// request"), but bad request content is the client's error. The server
// registers its services with deserializers that never throw: a message that
// does not decode becomes a marker the handler wrapper answers with
// INVALID_ARGUMENT.
import type * as grpc from '@grpc/grpc-js';
import { describeError, invalidArgument, type BerthError } from '../runtime/errors';

const UNDECODABLE = Symbol('undecodable request');

interface Undecodable {
  [UNDECODABLE]: string;
}

/** The service definition with each request deserializer made total (see above). */
export function tolerantDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [method, spec] of Object.entries(definition)) {
    out[method] = {
      ...spec,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return spec.requestDeserialize(bytes);
        } catch (err) {
          const marker: Undecodable = { [UNDECODABLE]: describeError(err) };
          return marker;
        }
      },
    };
  }
  return out;
}

/** INVALID_ARGUMENT for a request that did not decode; undefined for a real message. */
export function undecodableRequest(method: string, request: unknown): BerthError | undefined {
  if (!request || typeof request !== 'object' || !(UNDECODABLE in request)) return undefined;
  return invalidArgument(`request: not a valid ${method} request message (${(request as Undecodable)[UNDECODABLE]})`);
}
