// Maps model errors to the gRPC status codes the CRI expects. Anything that is
// not a BerthError becomes INTERNAL with its message only: never a stack trace.
import { status as Status } from '@grpc/grpc-js';
import { BerthError, type BerthErrorKind } from '../runtime/errors';

const CODE_OF_KIND: Record<BerthErrorKind, Status> = {
  InvalidArgument: Status.INVALID_ARGUMENT,
  NotFound: Status.NOT_FOUND,
  AlreadyExists: Status.ALREADY_EXISTS,
  FailedPrecondition: Status.FAILED_PRECONDITION,
  DeadlineExceeded: Status.DEADLINE_EXCEEDED,
  ResourceExhausted: Status.RESOURCE_EXHAUSTED,
  Unimplemented: Status.UNIMPLEMENTED,
  Unavailable: Status.UNAVAILABLE,
  Cancelled: Status.CANCELLED,
  Internal: Status.INTERNAL,
};

export function toGrpcStatus(err: unknown): { code: Status; details: string } {
  if (err instanceof BerthError) return { code: CODE_OF_KIND[err.kind], details: err.message };
  const details = err instanceof Error ? err.message : String(err);
  return { code: Status.INTERNAL, details: details || 'internal error' };
}

export function statusName(code: Status): string {
  return Status[code] ?? String(code);
}
