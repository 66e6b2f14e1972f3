// The grpc-timeout request header: 1 to 8 ASCII digits and a unit
// (H hours, M minutes, S seconds, m milliseconds, u microseconds,
// n nanoseconds), the time the client gives the call from when it sent it.

const MILLIS_PER_UNIT: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** Milliseconds of a grpc-timeout value, or undefined when it is malformed. */
export function parseGrpcTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * MILLIS_PER_UNIT[match[2]];
}

/** The longest a Node timer waits; a longer deadline is as good as none for a daemon's call. */
export const LONGEST_TIMER_MS = 2 ** 31 - 1;
