// The tar an image export is written as: ustar headers for directories and
// regular files, sizes past the octal field's 8 GiB in GNU base-256 (what
// tar-reader.ts, GNU tar and Go's archive/tar read), file data streamed from
// disk. Only berth's own names and blobs go in, so there is no need for PAX.

const BLOCK = 512;
/** 2000-01-01: a fixed time, so the same images export to the same bytes. */
const MTIME = 946684800;

function octal(header: Buffer, offset: number, length: number, value: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii');
}

function sizeField(header: Buffer, size: number): void {
  if (size < 8 ** 11) {
    octal(header, 124, 12, size);
    return;
  }
  // base-256: the high bit of the first byte marks it; the value is big-endian in the rest.
  let rest = size;
  for (let i = 135; i > 124; i--) {
    header[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  header[124] = 0x80;
}

/** One header block; `name` must fit ustar's 100 bytes (berth's names are short). */
export function tarHeader(name: string, kind: 'file' | 'dir', size = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`archive name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, kind === 'dir' ? 0o755 : 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  sizeField(h, kind === 'dir' ? 0 : size);
  octal(h, 136, 12, MTIME);
  h.fill(0x20, 148, 156);
  h.write(kind === 'dir' ? '5' : '0', 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/** Zero bytes that complete a file's last block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export function tarEnd(): Buffer {
  return Buffer.alloc(BLOCK * 2);
}
