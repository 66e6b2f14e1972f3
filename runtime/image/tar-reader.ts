// A tar stream read as entries, as OCI layers are written: ustar and GNU
// headers, PAX records (local and global, with SCHILY.xattr.*), GNU long names
// and base-256 numbers. Every number and length is checked: the archive is
// hostile content. Only reading: layer-unpacker.ts decides what goes on disk.
import { invalidArgument } from '../errors';

const BLOCK = 512;

/** Reads exact byte counts from an async stream of chunks. */
class ByteReader {
  private buffered: Buffer[] = [];
  private length = 0;
  private done = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async fill(min: number): Promise<void> {
    while (this.length < min && !this.done) {
      const next = await this.source.next();
      if (next.done) {
        this.done = true;
        break;
      }
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
      if (chunk.length === 0) continue;
      this.buffered.push(chunk);
      this.length += chunk.length;
    }
  }

  /** Removes and returns the next n buffered bytes, copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.buffered[0];
    this.length -= n;
    if (first.length >= n) {
      if (first.length === n) this.buffered.shift();
      else this.buffered[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const head = this.buffered[0];
      const need = n - got;
      if (head.length <= need) {
        parts.push(head);
        this.buffered.shift();
        got += head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.buffered[0] = head.subarray(need);
        got = n;
      }
    }
    return Buffer.concat(parts, n);
  }

  /** Exactly n bytes, or null at a clean end of stream. */
  async read(n: number): Promise<Buffer | null> {
    await this.fill(n);
    if (this.length === 0 && this.done) return null;
    if (this.length < n) throw invalidArgument('layer tar is truncated');
    return this.take(n);
  }

  /** Yields the next n bytes in pieces as they arrive. */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.length === 0) await this.fill(1);
      if (this.length === 0) throw invalidArgument('layer tar is truncated');
      // Whole chunks as they came (no copy): file data goes straight to write(2).
      const piece = this.take(Math.min(left, this.buffered[0].length));
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n)) {
      // discarded
    }
  }
}

interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

function parseNumber(field: Buffer, what: string): number {
  if (field[0] & 0x80) {
    // base-256: big-endian, high bit of the first byte is the marker.
    let value = 0;
    for (let i = 0; i < field.length; i++) value = value * 256 + (i === 0 ? field[i] & 0x7f : field[i]);
    if (!Number.isSafeInteger(value)) throw invalidArgument(`layer tar: ${what} is out of range`);
    return value;
  }
  const text = field.toString('ascii').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalidArgument(`layer tar: bad ${what} field`);
  return parseInt(text, 8);
}

function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString('utf8');
}

function parseHeader(block: Buffer): TarHeader | null {
  if (block.every((b) => b === 0)) return null;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  if (parseNumber(block.subarray(148, 156), 'checksum') !== sum) throw invalidArgument('layer tar: header checksum mismatch');
  const magic = block.subarray(257, 263).toString('ascii');
  let name = cString(block.subarray(0, 100));
  if (magic.startsWith('ustar')) {
    const prefix = cString(block.subarray(345, 500));
    if (prefix && magic === 'ustar\0') name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: parseNumber(block.subarray(100, 108), 'mode'),
    uid: parseNumber(block.subarray(108, 116), 'uid'),
    gid: parseNumber(block.subarray(116, 124), 'gid'),
    size: parseNumber(block.subarray(124, 136), 'size'),
    mtime: parseNumber(block.subarray(136, 148), 'mtime'),
    typeflag: block.subarray(156, 157).toString('ascii'),
    linkname: cString(block.subarray(157, 257)),
    devmajor: parseNumber(block.subarray(329, 337), 'devmajor'),
    devminor: parseNumber(block.subarray(337, 345), 'devminor'),
  };
}

function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > data.length) throw invalidArgument('layer tar: malformed PAX header');
    const record = data.subarray(space + 1, at + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq > 0) out.set(record.subarray(0, eq).toString('utf8'), record.subarray(eq + 1));
    at += length;
  }
  return out;
}

/** A tar entry with its PAX records and GNU long names applied. */
export interface TarEntry {
  name: string;
  linkname: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  devmajor: number;
  devminor: number;
  /** Bytes of the entry's data: a regular file's contents. */
  size: number;
  /** Extended attributes from SCHILY.xattr.* records. */
  xattrs: [string, Buffer][];
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Regular (and contiguous) files carry data; the data of other entries is skipped. */
function isRegularFile(typeflag: string): boolean {
  return typeflag === '0' || typeflag === '\0' || typeflag === '7' || typeflag === '';
}

const numberRecord = (records: Map<string, Buffer>, key: string, fallback: number): number =>
  records.has(key) ? Number(records.get(key)!.toString('ascii')) : fallback;

export class TarReader {
  private readonly reader: ByteReader;
  private globalPax = new Map<string, Buffer>();
  /** Bytes of data (and padding) of the entry last returned that are not read yet. */
  private pending = 0;

  constructor(tar: AsyncIterable<Buffer>) {
    this.reader = new ByteReader(tar[Symbol.asyncIterator]());
  }

  /** The next entry, or null at the end of the archive. Whatever the previous entry's data was, it is skipped. */
  async next(): Promise<TarEntry | null> {
    await this.skipData();
    let pax = new Map<string, Buffer>();
    let gnuLongName: string | undefined;
    let gnuLongLink: string | undefined;
    for (;;) {
      const block = await this.reader.read(BLOCK);
      if (block === null) return null;
      const header = parseHeader(block);
      if (header === null) return null; // end-of-archive marker: the rest is padding
      const dataSize = header.size;
      switch (header.typeflag) {
        case 'x':
        case 'g': {
          if (dataSize > 1024 * 1024) throw invalidArgument('layer tar: PAX header larger than 1 MiB');
          const data = await this.readRecord(dataSize);
          if (header.typeflag === 'x') pax = parsePax(data);
          else {
            this.globalPax = new Map([...this.globalPax, ...parsePax(data)]);
            // Global records add up over the archive (each header may bring new keys): bounded as one header is.
            let total = 0;
            for (const [key, value] of this.globalPax) total += key.length + value.length;
            if (total > 1024 * 1024) throw invalidArgument('layer tar: global PAX records larger than 1 MiB in all');
          }
          continue;
        }
        case 'L':
        case 'K': {
          if (dataSize > 64 * 1024) throw invalidArgument('layer tar: GNU long name larger than 64 KiB');
          const text = cString(await this.readRecord(dataSize));
          if (header.typeflag === 'L') gnuLongName = text;
          else gnuLongLink = text;
          continue;
        }
        default:
          break;
      }
      const records = this.globalPax.size === 0 ? pax : new Map([...this.globalPax, ...pax]);
      const name = records.get('path')?.toString('utf8') ?? gnuLongName ?? header.name;
      const xattrs: [string, Buffer][] = [];
      for (const [key, value] of records) if (key.startsWith('SCHILY.xattr.')) xattrs.push([key.slice('SCHILY.xattr.'.length), value]);
      if (records.has('GNU.sparse.major') || records.has('GNU.sparse.map') || header.typeflag === 'S') {
        throw invalidArgument(`layer entry "${name}" is a GNU sparse file, which berth does not unpack`);
      }
      const size = numberRecord(records, 'size', dataSize);
      if (!Number.isSafeInteger(size) || size < 0) throw invalidArgument(`layer entry "${name}" has a bad size`);
      const stored = isRegularFile(header.typeflag) ? size : dataSize;
      this.pending = stored + padding(stored);
      return {
        name,
        linkname: records.get('linkpath')?.toString('utf8') ?? gnuLongLink ?? header.linkname,
        typeflag: header.typeflag,
        mode: header.mode,
        uid: numberRecord(records, 'uid', header.uid),
        gid: numberRecord(records, 'gid', header.gid),
        mtime: numberRecord(records, 'mtime', header.mtime),
        devmajor: header.devmajor,
        devminor: header.devminor,
        size,
        xattrs,
      };
    }
  }

  /** The data of the entry last returned (a regular file's `size` bytes), in pieces as they arrive. */
  async *data(entry: TarEntry): AsyncGenerator<Buffer> {
    for await (const piece of this.reader.pieces(entry.size)) {
      this.pending -= piece.length;
      yield piece;
    }
  }

  /** Reads whatever follows the end marker, so that a digest over the stream covers all of it. */
  async drain(): Promise<void> {
    for (;;) {
      const rest = await this.reader.read(BLOCK).catch(() => null);
      if (rest === null) break;
    }
  }

  private async skipData(): Promise<void> {
    const left = this.pending;
    this.pending = 0;
    if (left > 0) await this.reader.skip(left);
  }

  private async readRecord(size: number): Promise<Buffer> {
    if (size === 0) return Buffer.alloc(0);
    return (await this.reader.read(size + padding(size)))?.subarray(0, size) ?? Buffer.alloc(0);
  }
}
