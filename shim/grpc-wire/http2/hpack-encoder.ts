// HPACK encoding of the header blocks berth sends. A server's answers are a
// handful of fixed fields plus grpc-status and grpc-message, so nothing is
// ever added to the peer's dynamic table: a field is a static-table index
// when the table holds it whole, else a literal without indexing (with the
// static table's index for its name when it has one), strings uncoded.
// The blocks that never change are encoded once by their users.
import { STATIC_TABLE } from './hpack-static-table';

const wholeField = new Map<string, number>();
const nameOnly = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!nameOnly.has(name)) nameOnly.set(name, i + 1);
  wholeField.set(`${name}\0${value}`, i + 1);
});

/** Bytes of `value` as an integer with an N-bit prefix whose high bits are `flags` (RFC 7541 5.1). */
function pushInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function pushString(out: number[], text: string): void {
  const bytes = Buffer.from(text, 'latin1');
  pushInteger(out, bytes.length, 7, 0);
  for (const byte of bytes) out.push(byte);
}

/** A header block for `fields`, in order. Names must be lowercase; values are sent as latin1. */
export function encodeHeaderBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const whole = wholeField.get(`${name}\0${value}`);
    if (whole !== undefined) {
      pushInteger(out, whole, 7, 0x80);
      continue;
    }
    const nameIndex = nameOnly.get(name);
    if (nameIndex !== undefined) {
      pushInteger(out, nameIndex, 4, 0);
    } else {
      out.push(0);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return Buffer.from(out);
}
