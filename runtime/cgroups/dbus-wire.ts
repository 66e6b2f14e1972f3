// The D-Bus wire format (little-endian), for the few systemd calls berth makes:
// type signatures, value marshalling with D-Bus alignment, and message framing.
// Values follow their signature: integers up to 32 bits are numbers, 64-bit ones
// bigints, arrays and structs JS arrays (a dict entry is a [key, value] pair), a
// variant carries its own signature.

export type DbusValue = number | bigint | boolean | string | DbusValue[] | DbusVariant;

export interface DbusVariant {
  signature: string;
  value: DbusValue;
}

export function variant(signature: string, value: DbusValue): DbusVariant {
  return { signature, value };
}

export enum MessageType {
  MethodCall = 1,
  MethodReturn = 2,
  Error = 3,
  Signal = 4,
}

export const NO_REPLY_EXPECTED = 0x1;

export interface DbusMessage {
  type: MessageType;
  flags: number;
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  signature: string;
  body: DbusValue[];
}

const FIELD = { path: 1, interface: 2, member: 3, errorName: 4, replySerial: 5, destination: 6, sender: 7, signature: 8 } as const;
const FIELD_SIGNATURE: Record<number, string> = { 1: 'o', 2: 's', 3: 's', 4: 's', 5: 'u', 6: 's', 7: 's', 8: 'g', 9: 'u' };
/** Largest message the specification allows; a peer announcing more is broken. */
export const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

/** Splits a signature into its complete types ("sa{sv}u" → ["s", "a{sv}", "u"]). */
export function splitSignature(signature: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < signature.length) {
    const end = completeTypeEnd(signature, i);
    out.push(signature.slice(i, end));
    i = end;
  }
  return out;
}

function completeTypeEnd(sig: string, start: number): number {
  const c = sig[start];
  if (c === undefined) throw new Error(`D-Bus signature "${sig}" ends inside a type`);
  if (c === 'a') return completeTypeEnd(sig, start + 1);
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    let i = start + 1;
    while (sig[i] !== close) {
      if (i >= sig.length) throw new Error(`D-Bus signature "${sig}" has an unclosed ${c}`);
      i = completeTypeEnd(sig, i);
    }
    return i + 1;
  }
  if ('ybnqiuxtdsogvh'.includes(c)) return start + 1;
  throw new Error(`D-Bus signature "${sig}": unknown type code "${c}"`);
}

function alignment(type: string): number {
  switch (type[0]) {
    case 'y': case 'g': case 'v': return 1;
    case 'n': case 'q': return 2;
    case 'b': case 'i': case 'u': case 's': case 'o': case 'a': case 'h': return 4;
    default: return 8; // x t d ( {
  }
}

/** Growable little-endian buffer whose offsets are those of the whole message (alignment counts from its start). */
export class WireWriter {
  private buf = Buffer.alloc(256);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  align(n: number): void {
    const pad = (n - (this.length % n)) % n;
    this.reserve(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  write(type: string, value: DbusValue): void {
    const c = type[0];
    this.align(alignment(type));
    switch (c) {
      case 'y': this.reserve(1); this.buf.writeUInt8(num(value, type), this.length); this.length += 1; return;
      case 'b': this.reserve(4); this.buf.writeUInt32LE(value === true ? 1 : 0, this.length); this.length += 4; return;
      case 'n': this.reserve(2); this.buf.writeInt16LE(num(value, type), this.length); this.length += 2; return;
      case 'q': this.reserve(2); this.buf.writeUInt16LE(num(value, type), this.length); this.length += 2; return;
      case 'i': case 'h': this.reserve(4); this.buf.writeInt32LE(num(value, type), this.length); this.length += 4; return;
      case 'u': this.reserve(4); this.buf.writeUInt32LE(num(value, type), this.length); this.length += 4; return;
      case 'x': this.reserve(8); this.buf.writeBigInt64LE(big(value, type), this.length); this.length += 8; return;
      case 't': this.reserve(8); this.buf.writeBigUInt64LE(big(value, type), this.length); this.length += 8; return;
      case 'd': this.reserve(8); this.buf.writeDoubleLE(num(value, type), this.length); this.length += 8; return;
      case 's': case 'o': {
        const text = Buffer.from(str(value, type), 'utf8');
        this.reserve(4 + text.length + 1);
        this.buf.writeUInt32LE(text.length, this.length);
        text.copy(this.buf, this.length + 4);
        this.buf[this.length + 4 + text.length] = 0;
        this.length += 4 + text.length + 1;
        return;
      }
      case 'g': {
        const text = Buffer.from(str(value, type), 'ascii');
        if (text.length > 255) throw new Error('D-Bus signature longer than 255 bytes');
        this.reserve(1 + text.length + 1);
        this.buf[this.length] = text.length;
        text.copy(this.buf, this.length + 1);
        this.buf[this.length + 1 + text.length] = 0;
        this.length += 1 + text.length + 1;
        return;
      }
      case 'v': {
        const v = value as DbusVariant;
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('D-Bus variant expected');
        this.write('g', v.signature);
        this.write(v.signature, v.value);
        return;
      }
      case 'a': {
        if (!Array.isArray(value)) throw new Error(`D-Bus array expected for ${type}`);
        const element = type.slice(1);
        const lengthAt = this.length;
        this.reserve(4);
        this.length += 4;
        this.align(alignment(element));
        const start = this.length;
        for (const item of value) this.write(element, item);
        this.buf.writeUInt32LE(this.length - start, lengthAt);
        return;
      }
      case '(': case '{': {
        if (!Array.isArray(value)) throw new Error(`D-Bus struct expected for ${type}`);
        const fields = splitSignature(type.slice(1, -1));
        if (fields.length !== value.length) throw new Error(`D-Bus ${type} needs ${fields.length} fields, got ${value.length}`);
        fields.forEach((field, i) => this.write(field, value[i]));
        return;
      }
      default:
        throw new Error(`D-Bus type "${type}" is not supported`);
    }
  }
}

function num(value: DbusValue, type: string): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  throw new Error(`D-Bus ${type} expects a number`);
}
function big(value: DbusValue, type: string): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  throw new Error(`D-Bus ${type} expects an integer`);
}
function str(value: DbusValue, type: string): string {
  if (typeof value === 'string') return value;
  throw new Error(`D-Bus ${type} expects a string`);
}

/** Reads values back; offsets count from the start of the message, as alignment does. */
export class WireReader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.offset + n > this.buf.length) throw new Error('D-Bus message truncated');
  }

  align(n: number): void {
    this.offset += (n - (this.offset % n)) % n;
  }

  read(type: string, depth = 0): DbusValue {
    if (depth > 64) throw new Error('D-Bus value nested too deeply');
    const c = type[0];
    this.align(alignment(type));
    switch (c) {
      case 'y': this.need(1); return this.buf.readUInt8(this.offset++);
      case 'b': this.need(4); this.offset += 4; return this.buf.readUInt32LE(this.offset - 4) !== 0;
      case 'n': this.need(2); this.offset += 2; return this.buf.readInt16LE(this.offset - 2);
      case 'q': this.need(2); this.offset += 2; return this.buf.readUInt16LE(this.offset - 2);
      case 'i': case 'h': this.need(4); this.offset += 4; return this.buf.readInt32LE(this.offset - 4);
      case 'u': this.need(4); this.offset += 4; return this.buf.readUInt32LE(this.offset - 4);
      case 'x': this.need(8); this.offset += 8; return this.buf.readBigInt64LE(this.offset - 8);
      case 't': this.need(8); this.offset += 8; return this.buf.readBigUInt64LE(this.offset - 8);
      case 'd': this.need(8); this.offset += 8; return this.buf.readDoubleLE(this.offset - 8);
      case 's': case 'o': {
        this.need(4);
        const len = this.buf.readUInt32LE(this.offset);
        this.need(4 + len + 1);
        const text = this.buf.toString('utf8', this.offset + 4, this.offset + 4 + len);
        this.offset += 4 + len + 1;
        return text;
      }
      case 'g': {
        this.need(1);
        const len = this.buf[this.offset];
        this.need(1 + len + 1);
        const text = this.buf.toString('ascii', this.offset + 1, this.offset + 1 + len);
        this.offset += 1 + len + 1;
        return text;
      }
      case 'v': {
        const signature = this.read('g') as string;
        if (splitSignature(signature).length !== 1) throw new Error(`D-Bus variant signature "${signature}" is not one type`);
        return { signature, value: this.read(signature, depth + 1) };
      }
      case 'a': {
        this.need(4);
        const len = this.buf.readUInt32LE(this.offset);
        this.offset += 4;
        const element = type.slice(1);
        this.align(alignment(element));
        const end = this.offset + len;
        if (end > this.buf.length) throw new Error('D-Bus array runs past the message');
        const out: DbusValue[] = [];
        while (this.offset < end) out.push(this.read(element, depth + 1));
        return out;
      }
      case '(': case '{':
        return splitSignature(type.slice(1, -1)).map((field) => this.read(field, depth + 1));
      default:
        throw new Error(`D-Bus type "${type}" is not supported`);
    }
  }
}

/** One whole message as bytes. */
export function encodeMessage(message: Omit<DbusMessage, 'sender'>): Buffer {
  const body = new WireWriter();
  const types = splitSignature(message.signature);
  if (types.length !== message.body.length) throw new Error(`D-Bus body has ${message.body.length} values for signature "${message.signature}"`);
  types.forEach((type, i) => body.write(type, message.body[i]));

  const fields: DbusValue[] = [];
  const add = (code: number, value: string | number | undefined): void => {
    if (value !== undefined) fields.push([code, variant(FIELD_SIGNATURE[code], value)]);
  };
  add(FIELD.path, message.path);
  add(FIELD.interface, message.interface);
  add(FIELD.member, message.member);
  add(FIELD.errorName, message.errorName);
  add(FIELD.replySerial, message.replySerial);
  add(FIELD.destination, message.destination);
  if (message.signature) add(FIELD.signature, message.signature);

  const header = new WireWriter();
  header.write('y', 'l'.charCodeAt(0));
  header.write('y', message.type);
  header.write('y', message.flags);
  header.write('y', 1);
  header.write('u', body.length);
  header.write('u', message.serial);
  header.write('a(yv)', fields);
  header.align(8);
  return Buffer.concat([header.bytes(), body.bytes()]);
}

/** Bytes needed for the message at the start of buf, or undefined while its fixed header is incomplete. */
export function messageLength(buf: Buffer): number | undefined {
  if (buf.length < 16) return undefined;
  if (buf[0] !== 'l'.charCodeAt(0)) throw new Error('D-Bus peer sent a big-endian message, which berth does not read');
  const bodyLength = buf.readUInt32LE(4);
  const fieldsLength = buf.readUInt32LE(12);
  const headerEnd = 16 + fieldsLength;
  const total = headerEnd + ((8 - (headerEnd % 8)) % 8) + bodyLength;
  if (total > MAX_MESSAGE_BYTES) throw new Error(`D-Bus message of ${total} bytes is larger than the protocol allows`);
  return total;
}

export function decodeMessage(buf: Buffer): DbusMessage {
  const reader = new WireReader(buf);
  reader.offset = 1;
  const type = reader.read('y') as number;
  const flags = reader.read('y') as number;
  reader.read('y');
  reader.read('u');
  const serial = reader.read('u') as number;
  const message: DbusMessage = { type, flags, serial, signature: '', body: [] };
  for (const field of reader.read('a(yv)') as DbusValue[][]) {
    const code = field[0] as number;
    const value = (field[1] as DbusVariant).value;
    if (code === FIELD.path) message.path = value as string;
    else if (code === FIELD.interface) message.interface = value as string;
    else if (code === FIELD.member) message.member = value as string;
    else if (code === FIELD.errorName) message.errorName = value as string;
    else if (code === FIELD.replySerial) message.replySerial = value as number;
    else if (code === FIELD.destination) message.destination = value as string;
    else if (code === FIELD.sender) message.sender = value as string;
    else if (code === FIELD.signature) message.signature = value as string;
  }
  reader.align(8);
  message.body = splitSignature(message.signature).map((t) => reader.read(t));
  return message;
}
