// HPACK header block decoding (RFC 7541): indexed fields, literals with and
// without indexing, never-indexed literals, dynamic table size updates, the
// dynamic table itself (bounded by the size we advertise in
// SETTINGS_HEADER_TABLE_SIZE) and Huffman-coded strings. Any malformed
// block is a CompressionError: the connection's decoding state is then
// unknown, so the caller ends the connection (COMPRESSION_ERROR).
import { HuffmanError, huffmanDecode } from './huffman-decoder';
import { STATIC_TABLE } from './hpack-static-table';

/** RFC 7541 4.1: an entry's size is its name and value octets plus 32. */
const ENTRY_OVERHEAD = 32;
/** Integers past this are no sizes or indexes a sane peer sends. */
const LARGEST_INTEGER = 2 ** 28;

/** Huffman-coded strings up to this many octets are kept decoded, up to HUFFMAN_CACHE_ENTRIES of them per connection. */
const HUFFMAN_CACHE_CODE_BYTES = 96;
const HUFFMAN_CACHE_ENTRIES = 128;

export class CompressionError extends Error {}

/** A decoded header list: names in order of arrival, values of repeated names joined with ", ". */
export type HeaderList = Record<string, string>;

export interface DecodedBlock {
  headers: HeaderList;
  /** The fields in order, for checks that care (pseudo-headers first). */
  names: string[];
  /** True when the list was over the size limit: `headers` then holds only the fields before it. */
  oversized: boolean;
}

export class HpackDecoder {
  /** Newest entry last. */
  private readonly entries: Array<readonly [string, string]> = [];
  private size = 0;
  private limit: number;
  private pos = 0;
  private block: Buffer = Buffer.alloc(0);
  /** Huffman-coded strings decoded before, by their code as latin1 (bounded: emptied when full). */
  private readonly huffmanCache = new Map<string, string>();

  /** `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE we advertised, the most a size update may ask for. */
  constructor(private readonly maxTableSize = 4096) {
    this.limit = maxTableSize;
  }

  /** The dynamic table's current size in RFC 7541 octets (for tests). */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table's entries, newest first (for tests). */
  get table(): Array<readonly [string, string]> {
    return [...this.entries].reverse();
  }

  /** Decodes one complete header block; fields past `maxListSize` are decoded (the table must stay in step) but not kept. */
  decode(block: Buffer, maxListSize = Infinity): DecodedBlock {
    this.block = block;
    this.pos = 0;
    // No prototype: a peer may name a header __proto__ or constructor.
    const headers = Object.create(null) as HeaderList;
    const names: string[] = [];
    let listSize = 0;
    let oversized = false;
    let fieldSeen = false;
    while (this.pos < block.length) {
      const first = block[this.pos];
      let name: string;
      let value: string;
      // No destructuring here: unoptimized, [a, b] = pair runs the iterator protocol for every field.
      if (first & 0x80) {
        const field = this.field(this.integer(7));
        name = field[0];
        value = field[1];
      } else if ((first & 0xe0) === 0x20) {
        if (fieldSeen) throw new CompressionError('a dynamic table size update after the first header field');
        const size = this.integer(5);
        if (size > this.maxTableSize) throw new CompressionError(`a dynamic table size update to ${size}, over the ${this.maxTableSize} allowed`);
        this.limit = size;
        this.evictTo(size);
        continue;
      } else {
        const indexing = (first & 0xc0) === 0x40;
        const index = this.integer(indexing ? 6 : 4);
        name = index === 0 ? this.string() : this.field(index)[0];
        value = this.string();
        if (indexing) this.insert(name, value);
      }
      fieldSeen = true;
      if (oversized) continue;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > maxListSize) {
        oversized = true;
        continue;
      }
      const previous = headers[name];
      headers[name] = previous === undefined ? value : `${previous}, ${value}`;
      names.push(name);
    }
    this.block = Buffer.alloc(0);
    return { headers, names, oversized };
  }

  private field(index: number): readonly [string, string] {
    if (index === 0) throw new CompressionError('header field index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const entry = this.entries[this.entries.length - 1 - (index - STATIC_TABLE.length - 1)];
    if (!entry) throw new CompressionError(`header field index ${index} is past the tables (${STATIC_TABLE.length} static, ${this.entries.length} dynamic)`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.limit) {
      // RFC 7541 4.4: an entry larger than the table empties it and is not added.
      this.entries.length = 0;
      this.size = 0;
      return;
    }
    this.evictTo(this.limit - entrySize);
    this.entries.push([name, value]);
    this.size += entrySize;
  }

  private evictTo(size: number): void {
    let drop = 0;
    while (this.size > size) {
      const [name, value] = this.entries[drop++];
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
    }
    if (drop > 0) this.entries.splice(0, drop);
  }

  /** An integer with an N-bit prefix (RFC 7541 5.1). */
  private integer(prefixBits: number): number {
    const block = this.block;
    if (this.pos >= block.length) throw new CompressionError('a header block ends inside an integer');
    const max = (1 << prefixBits) - 1;
    let value = block[this.pos++] & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= block.length) throw new CompressionError('a header block ends inside an integer');
      const byte = block[this.pos++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (value > LARGEST_INTEGER) throw new CompressionError('an integer in a header block is too large');
      if ((byte & 0x80) === 0) return value;
    }
  }

  /** A string literal (RFC 7541 5.2), as latin1. */
  private string(): string {
    const block = this.block;
    if (this.pos >= block.length) throw new CompressionError('a header block ends before a string');
    const huffman = (block[this.pos] & 0x80) !== 0;
    const length = this.integer(7);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) throw new CompressionError(`a string of ${length} octets runs past the end of its header block`);
    this.pos = end;
    if (!huffman) return block.toString('latin1', start, end);
    // A client may send a value coded again on every request (grpc-js's :path is never indexed): the decoded
    // strings of short codes are kept, so a repeated one costs a latin1 copy and a lookup, not a decode bit by bit.
    const cacheable = length <= HUFFMAN_CACHE_CODE_BYTES;
    const coded = cacheable ? block.toString('latin1', start, end) : '';
    if (cacheable) {
      const known = this.huffmanCache.get(coded);
      if (known !== undefined) return known;
    }
    let decoded: string;
    try {
      decoded = huffmanDecode(block, start, end);
    } catch (err) {
      if (err instanceof HuffmanError) throw new CompressionError(err.message);
      throw err;
    }
    if (cacheable) {
      if (this.huffmanCache.size >= HUFFMAN_CACHE_ENTRIES) this.huffmanCache.clear();
      this.huffmanCache.set(coded, decoded);
    }
    return decoded;
  }
}
