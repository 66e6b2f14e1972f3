// A small tar (ustar + PAX) writer for building image layers in tests. It writes
// names exactly as given, so tests can also build malicious layers (paths with
// "..", absolute paths, links pointing outside) to check the unpacker refuses them.

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  /** Path inside the archive, e.g. "bin/busybox" or "etc/" (written verbatim). */
  path: string;
  type: TarEntryType;
  /** Content of a regular file. */
  content?: Buffer | string;
  /** Permission bits (default 0o644 for files, 0o755 for dirs, 0o777 for symlinks). */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Target of a symlink or hardlink. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Seconds since the epoch (default 2024-01-01). */
  mtime?: number;
  /** Extended attributes, written as PAX SCHILY.xattr.<name> records. */
  xattrs?: Record<string, string | Buffer>;
  /** Extra PAX records, written verbatim (e.g. to test odd archives). */
  pax?: Record<string, string>;
}

const BLOCK = 512;
const DEFAULT_MTIME = 1704067200;

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

function writeString(header: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  bytes.copy(header, offset, 0, Math.min(bytes.length, length));
}

function writeOctal(header: Buffer, offset: number, length: number, value: number): void {
  const text = value.toString(8).padStart(length - 1, '0');
  if (text.length > length - 1) throw new Error(`tar: ${value} does not fit a ${length}-byte octal field`);
  header.write(`${text}\0`, offset, length, 'ascii');
}

function paxRecord(key: string, value: Buffer): Buffer {
  // The length prefix counts itself, so find the fixed point.
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length), 'ascii'), body]);
}

function padded(data: Buffer): Buffer[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest)];
}

function header(fields: {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}): Buffer {
  const h = Buffer.alloc(BLOCK);
  writeString(h, 0, 100, fields.name);
  writeOctal(h, 100, 8, fields.mode & 0o7777);
  writeOctal(h, 108, 8, fields.uid);
  writeOctal(h, 116, 8, fields.gid);
  writeOctal(h, 124, 12, fields.size);
  writeOctal(h, 136, 12, fields.mtime);
  h.fill(0x20, 148, 156);
  h.write(fields.typeflag, 156, 1, 'ascii');
  writeString(h, 157, 100, fields.linkname);
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  writeString(h, 265, 32, fields.uname);
  writeString(h, 297, 32, fields.gname);
  writeOctal(h, 329, 8, fields.devmajor);
  writeOctal(h, 337, 8, fields.devminor);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/** Serializes entries into one uncompressed tar archive (with the two closing zero blocks). */
export function writeTar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const content = entry.type === 'file' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0);
    const linkname = entry.linkname ?? '';
    const records: Buffer[] = [];
    const nameBytes = Buffer.byteLength(entry.path);
    if (nameBytes > 100) records.push(paxRecord('path', Buffer.from(entry.path)));
    if (Buffer.byteLength(linkname) > 100) records.push(paxRecord('linkpath', Buffer.from(linkname)));
    for (const [key, value] of Object.entries(entry.xattrs ?? {})) {
      records.push(paxRecord(`SCHILY.xattr.${key}`, Buffer.from(value)));
    }
    for (const [key, value] of Object.entries(entry.pax ?? {})) records.push(paxRecord(key, Buffer.from(value)));
    const mtime = entry.mtime ?? DEFAULT_MTIME;
    if (records.length > 0) {
      const body = Buffer.concat(records);
      parts.push(
        header({
          name: 'PaxHeaders/entry',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: body.length,
          mtime,
          typeflag: 'x',
          linkname: '',
          uname: '',
          gname: '',
          devmajor: 0,
          devminor: 0,
        }),
        ...padded(body),
      );
    }
    const defaultMode = entry.type === 'dir' ? 0o755 : entry.type === 'symlink' ? 0o777 : 0o644;
    parts.push(
      header({
        name: nameBytes > 100 ? entry.path.slice(0, 100) : entry.path,
        mode: entry.mode ?? defaultMode,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        size: content.length,
        mtime,
        typeflag: TYPEFLAG[entry.type],
        linkname: Buffer.byteLength(linkname) > 100 ? linkname.slice(0, 100) : linkname,
        uname: entry.uname ?? '',
        gname: entry.gname ?? '',
        devmajor: entry.devmajor ?? 0,
        devminor: entry.devminor ?? 0,
      }),
    );
    if (content.length > 0) parts.push(...padded(content));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
