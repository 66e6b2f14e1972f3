// The tars berth writes. An image export: ustar headers for directories and
// regular files, sizes past the octal field's 8 GiB in GNU base-256 (what
// tar-reader.ts, GNU tar and Go's archive/tar read), file data streamed from
// disk; only berth's own names go in, so no PAX. A checkpoint's rootfs diff
// (tarEntryHeader): any file type a container can leave in its writable
// layer, with its owner, mode and time, and a PAX record for what ustar cannot
// hold (long or non-ASCII names and link targets, large ids).

import { readSync } from 'node:fs';

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
  checksum(h);
  return h;
}

export interface TarEntryMeta {
  /** The path inside the archive, relative, without a trailing slash. */
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of a regular file's data (0 for every other type). */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Target of a symlink or (an earlier entry's name) of a hardlink. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

const TYPEFLAGS: Record<TarEntryMeta['type'], string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const MAX_OCTAL_ID = 0o7777777;

/** One PAX record: "<length> <key>=<value>\n", the length counting its own digits. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyBytes = Buffer.byteLength(body);
  let length = bodyBytes + 1;
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
  return Buffer.from(`${length}${body}`, 'utf8');
}

const fitsUstar = (text: string, max: number): boolean => Buffer.byteLength(text) <= max && /^[\x20-\x7e]*$/.test(text);

/** The header block(s) of one entry: a PAX extended header first when ustar's fields cannot hold it. */
export function tarEntryHeader(meta: TarEntryMeta): Buffer {
  const name = meta.type === 'dir' ? `${meta.name}/` : meta.name;
  const linkname = meta.linkname ?? '';
  const size = meta.type === 'file' ? meta.size : 0;
  const mtime = Math.max(0, Math.min(Math.floor(meta.mtime), 8 ** 11 - 1));
  const records: Buffer[] = [];
  if (!fitsUstar(name, 100)) records.push(paxRecord('path', name));
  if (!fitsUstar(linkname, 100)) records.push(paxRecord('linkpath', linkname));
  if (meta.uid > MAX_OCTAL_ID) records.push(paxRecord('uid', String(meta.uid)));
  if (meta.gid > MAX_OCTAL_ID) records.push(paxRecord('gid', String(meta.gid)));
  const h = Buffer.alloc(BLOCK);
  // Cut at 100 bytes when too long: readers take the PAX record's copy then.
  Buffer.from(name).copy(h, 0, 0, 100);
  octal(h, 100, 8, meta.mode & 0o7777);
  octal(h, 108, 8, Math.min(meta.uid, MAX_OCTAL_ID));
  octal(h, 116, 8, Math.min(meta.gid, MAX_OCTAL_ID));
  sizeField(h, size);
  octal(h, 136, 12, mtime);
  h.fill(0x20, 148, 156);
  h.write(TYPEFLAGS[meta.type], 156, 1, 'ascii');
  Buffer.from(linkname).copy(h, 157, 0, 100);
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  if (meta.type === 'char' || meta.type === 'block') {
    octal(h, 329, 8, meta.devmajor ?? 0);
    octal(h, 337, 8, meta.devminor ?? 0);
  }
  checksum(h);
  if (records.length === 0) return h;
  const data = Buffer.concat(records);
  const pax = Buffer.alloc(BLOCK);
  pax.write('././@PaxHeader', 0, 100, 'ascii');
  octal(pax, 100, 8, 0o644);
  octal(pax, 108, 8, 0);
  octal(pax, 116, 8, 0);
  sizeField(pax, data.length);
  octal(pax, 136, 12, mtime);
  pax.fill(0x20, 148, 156);
  pax.write('x', 156, 1, 'ascii');
  pax.write('ustar\0', 257, 6, 'ascii');
  pax.write('00', 263, 2, 'ascii');
  checksum(pax);
  return Buffer.concat([pax, data, tarPadding(data.length), h]);
}

function checksum(h: Buffer): void {
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
}

/** Zero bytes that complete a file's last block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/**
 * A regular file's body from an open fd: exactly `size` bytes, the size its header
 * already announced (zeros make up for a file that shrank meanwhile), then the padding.
 */
export function writeTarFileBody(fd: number, size: number, buffer: Buffer, write: (data: Buffer) => void): void {
  let left = size;
  while (left > 0) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, left), null);
    if (n === 0) break;
    write(buffer.subarray(0, n));
    left -= n;
  }
  if (left > 0) write(Buffer.alloc(left));
  write(tarPadding(size));
}

/** The two zero blocks that end an archive. */
export function tarEnd(): Buffer {
  return Buffer.alloc(BLOCK * 2);
}
