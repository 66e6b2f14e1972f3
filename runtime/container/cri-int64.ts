// The CRI's int64 fields arrive as decimal strings (they do not fit a JS
// number); each is parsed once, naming its field when it is bad.
import { invalidArgument } from '../errors';

/** The number in an int64 field ("" or absent = 0); INVALID_ARGUMENT naming `field` when not an integer in [min, max]. */
export function int64Field(value: string | undefined, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === '') return 0;
  if (!/^-?\d+$/.test(value)) throw invalidArgument(`${field}: "${value}" is not an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalidArgument(`${field}: ${value} is out of range [${min}, ${max}]`);
  return n;
}
