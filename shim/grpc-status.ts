// Maps model errors to the gRPC status codes the CRI expects. Anything that is
// not a BerthError becomes INTERNAL with its message only: never a stack trace.
import { BerthError, type BerthErrorKind } from '../runtime/errors';
import { GrpcCode, type GrpcStatusCode } from './grpc-wire/status-codes';

const CODE_OF_KIND: Record<BerthErrorKind, GrpcStatusCode> = {
  InvalidArgument: GrpcCode.INVALID_ARGUMENT,
  NotFound: GrpcCode.NOT_FOUND,
  AlreadyExists: GrpcCode.ALREADY_EXISTS,
  FailedPrecondition: GrpcCode.FAILED_PRECONDITION,
  DeadlineExceeded: GrpcCode.DEADLINE_EXCEEDED,
  ResourceExhausted: GrpcCode.RESOURCE_EXHAUSTED,
  Unimplemented: GrpcCode.UNIMPLEMENTED,
  Unavailable: GrpcCode.UNAVAILABLE,
  Cancelled: GrpcCode.CANCELLED,
  Internal: GrpcCode.INTERNAL,
};

const NAME_OF_CODE = new Map<number, string>(Object.entries(GrpcCode).map(([name, code]) => [code, name]));

export function toGrpcStatus(err: unknown): { code: GrpcStatusCode; details: string } {
  if (err instanceof BerthError) return { code: CODE_OF_KIND[err.kind], details: err.message };
  const details = err instanceof Error ? err.message : String(err);
  return { code: GrpcCode.INTERNAL, details: details || 'internal error' };
}

export function statusName(code: number): string {
  return NAME_OF_CODE.get(code) ?? String(code);
}
