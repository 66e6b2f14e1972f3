// Errors the model raises. The shim maps each kind to the gRPC status the CRI
// defines, so nothing below shim/ needs to know about gRPC.

export type BerthErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'DeadlineExceeded'
  | 'ResourceExhausted'
  | 'Unimplemented'
  | 'Unavailable'
  | 'Cancelled'
  | 'Internal';

export class BerthError extends Error {
  readonly kind: BerthErrorKind;
  constructor(kind: BerthErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `BerthError(${kind})`;
  }
}

export const invalidArgument = (message: string): BerthError => new BerthError('InvalidArgument', message);
export const notFound = (message: string): BerthError => new BerthError('NotFound', message);
export const alreadyExists = (message: string): BerthError => new BerthError('AlreadyExists', message);
export const failedPrecondition = (message: string): BerthError => new BerthError('FailedPrecondition', message);
export const deadlineExceeded = (message: string): BerthError => new BerthError('DeadlineExceeded', message);
export const resourceExhausted = (message: string): BerthError => new BerthError('ResourceExhausted', message);
export const unimplemented = (message: string): BerthError => new BerthError('Unimplemented', message);
export const unavailable = (message: string): BerthError => new BerthError('Unavailable', message);
/** The caller gave up (cancelled, or its deadline passed) and the work it alone wanted stopped. */
export const cancelled = (message: string): BerthError => new BerthError('Cancelled', message);
export const internal = (message: string, cause?: unknown): BerthError =>
  new BerthError('Internal', message, { cause });

export function isBerthError(err: unknown, kind?: BerthErrorKind): err is BerthError {
  return err instanceof BerthError && (kind === undefined || err.kind === kind);
}

/** A readable one-line description of anything thrown. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A berth error passes through unchanged (it already says what the caller did
 * wrong); anything else is an internal failure of `what`, with its message.
 */
export function asBerthError(err: unknown, what: string): BerthError {
  if (err instanceof BerthError) return err;
  return internal(`${what}: ${describeError(err)}`, err);
}
