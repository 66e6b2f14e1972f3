// Timeouts a request gives (ExecSync, StopContainer, CheckpointContainer...)
// arrive as int64 seconds, but a Node timer of 2^31 ms or more fires at once
// (setTimeout clamps it to 1 ms with only a warning): a caller asking for
// "effectively forever" would get "now". Every user-given timeout passes here.
import { invalidArgument } from '../errors';

/** The longest delay a Node timer keeps: 2^31 - 1 ms (~24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest timeout in whole seconds whose milliseconds still fit a timer. */
export const MAX_TIMEOUT_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/**
 * A request's timeout field (int64 seconds as a decimal string; "" = 0):
 * negative counts as 0 (no wait), beyond MAX_TIMEOUT_SECONDS is clamped to it.
 * INVALID_ARGUMENT naming the field when it is not an integer.
 */
export function requestTimeoutSeconds(value: string | number | undefined, field: string): number {
  if (value === undefined || value === '') return 0;
  const text = String(value);
  if (!/^-?\d+$/.test(text)) throw invalidArgument(`${field}: "${text}" is not an integer`);
  if (text.startsWith('-')) return 0;
  // Compared as a BigInt: an int64 beyond 2^53 must clamp, not lose digits into a smaller number.
  return BigInt(text) > BigInt(MAX_TIMEOUT_SECONDS) ? MAX_TIMEOUT_SECONDS : Number(text);
}

/** A delay for setTimeout: within [0, MAX_TIMER_MS]. */
export function timerDelayMs(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}
