// The CRI's clock: timestamps are unix nanoseconds, carried as decimal strings
// (int64 does not fit a JS number).

/** Now, in unix nanoseconds. */
export function nowUnixNanos(): string {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}

/** A unix time in milliseconds (fractions kept to the microsecond), in unix nanoseconds. */
export function unixMillisToNanos(ms: number): string {
  return (BigInt(Math.floor(ms * 1000)) * 1000n).toString();
}

/** A monotonic start mark for elapsedSeconds. */
export function monotonicMark(): bigint {
  return process.hrtime.bigint();
}

export function elapsedSeconds(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}
