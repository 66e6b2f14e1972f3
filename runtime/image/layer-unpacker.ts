// Unpacks one layer's tar stream into its own directory, overlay-ready: whiteouts
// become 0:0 character devices, opaque markers the trusted.overlay.opaque xattr;
// hardlinks, symlinks, devices, fifos, xattrs, ownership, modes and mtimes are
// kept. Every path is checked first: nothing is ever written outside `root`
// (no "..", no absolute names, no writes through a symlink, no hardlink to a
// file outside the layer). The caller unpacks into a fresh temporary directory
// and removes it whole on failure.
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { posix } from 'node:path';
import { loadNative, type BerthNative } from '../../native';
import { invalidArgument } from '../errors';

const BLOCK = 512;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const WRITE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

export interface UnpackStats {
  /** Entries created (an inode count, hardlinks included). */
  entries: number;
  /** Logical bytes of regular files. */
  fileBytes: number;
}

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

  private take(n: number): Buffer {
    const whole = this.buffered.length === 1 ? this.buffered[0] : Buffer.concat(this.buffered);
    const out = whole.subarray(0, n);
    const rest = whole.subarray(n);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
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
      const piece = this.take(Math.min(left, this.length));
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

/** The entry's path inside the layer, normalized; refuses anything that could leave it. */
export function safeRelativePath(name: string): string {
  if (name.includes('\0')) throw invalidArgument(`layer entry "${name}" has a NUL byte`);
  if (name.startsWith('/')) throw invalidArgument(`layer entry "${name}" is an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalidArgument(`layer entry "${name}" escapes the layer ("..")`);
  return parts.join('/');
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export interface UnpackOptions {
  /** Called with each file's logical size before it is written (for the unpacked-size limit). */
  onFileBytes?: (bytes: number) => void;
  native?: BerthNative;
}

/** Unpacks a tar stream into `root` (an existing, empty directory). */
export async function unpackLayer(tar: AsyncIterable<Buffer>, root: string, options: UnpackOptions = {}): Promise<UnpackStats> {
  const native = options.native ?? loadNative();
  const reader = new ByteReader(tar[Symbol.asyncIterator]());
  const stats: UnpackStats = { entries: 0, fileBytes: 0 };
  // Paths (relative) this layer made symlinks or non-directories: no later entry may be written beneath one.
  const nonDirectories = new Set<string>();
  const directoryTimes: { path: string; mtime: number }[] = [];
  let globalPax = new Map<string, Buffer>();
  let pax = new Map<string, Buffer>();
  let gnuLongName: string | undefined;
  let gnuLongLink: string | undefined;

  const checkParents = (rel: string): void => {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (nonDirectories.has(parent)) throw invalidArgument(`layer entry "${rel}" would be written through the symlink or file "${parent}"`);
    }
  };

  const ensureParents = async (rel: string): Promise<void> => {
    const parent = posix.dirname(rel);
    if (parent !== '.') await fsp.mkdir(posix.join(root, parent), { recursive: true, mode: 0o755 });
  };

  /** Removes what is at `abs` unless it is a directory that stays a directory. */
  const clearFor = async (abs: string, keepDirectory: boolean): Promise<void> => {
    try {
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) {
        if (!keepDirectory) await fsp.rm(abs, { recursive: true, force: true });
      } else {
        await fsp.unlink(abs);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  };

  for (;;) {
    const block = await reader.read(BLOCK);
    if (block === null) break;
    const header = parseHeader(block);
    if (header === null) break; // end-of-archive marker: the rest is padding
    const dataSize = header.size;

    switch (header.typeflag) {
      case 'x':
      case 'g': {
        if (dataSize > 1024 * 1024) throw invalidArgument('layer tar: PAX header larger than 1 MiB');
        const data = (await reader.read(dataSize + padding(dataSize)))?.subarray(0, dataSize) ?? Buffer.alloc(0);
        if (header.typeflag === 'x') pax = parsePax(data);
        else globalPax = new Map([...globalPax, ...parsePax(data)]);
        continue;
      }
      case 'L':
      case 'K': {
        if (dataSize > 64 * 1024) throw invalidArgument('layer tar: GNU long name larger than 64 KiB');
        const data = (await reader.read(dataSize + padding(dataSize)))?.subarray(0, dataSize) ?? Buffer.alloc(0);
        const text = cString(data);
        if (header.typeflag === 'L') gnuLongName = text;
        else gnuLongLink = text;
        continue;
      }
      default:
        break;
    }

    const records = new Map([...globalPax, ...pax]);
    const name = records.get('path')?.toString('utf8') ?? gnuLongName ?? header.name;
    const linkname = records.get('linkpath')?.toString('utf8') ?? gnuLongLink ?? header.linkname;
    const size = records.has('size') ? Number(records.get('size')!.toString('ascii')) : dataSize;
    const uid = records.has('uid') ? Number(records.get('uid')!.toString('ascii')) : header.uid;
    const gid = records.has('gid') ? Number(records.get('gid')!.toString('ascii')) : header.gid;
    const mtime = records.has('mtime') ? Number(records.get('mtime')!.toString('ascii')) : header.mtime;
    const xattrs: [string, Buffer][] = [];
    for (const [key, value] of records) if (key.startsWith('SCHILY.xattr.')) xattrs.push([key.slice('SCHILY.xattr.'.length), value]);
    if (records.has('GNU.sparse.major') || records.has('GNU.sparse.map') || header.typeflag === 'S') {
      throw invalidArgument(`layer entry "${name}" is a GNU sparse file, which berth does not unpack`);
    }
    pax = new Map();
    gnuLongName = undefined;
    gnuLongLink = undefined;
    if (!Number.isSafeInteger(size) || size < 0) throw invalidArgument(`layer entry "${name}" has a bad size`);

    const rel = safeRelativePath(name);
    const base = posix.basename(rel);
    const hasData = header.typeflag === '0' || header.typeflag === '\0' || header.typeflag === '7' || header.typeflag === '';
    if (rel === '') {
      // The layer root itself: nothing to create.
      await reader.skip(hasData ? size + padding(size) : dataSize + padding(dataSize));
      continue;
    }
    checkParents(rel);
    const abs = posix.join(root, rel);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      await reader.skip(dataSize + padding(dataSize));
      const dirRel = posix.dirname(rel);
      const dirAbs = dirRel === '.' ? root : posix.join(root, dirRel);
      await ensureParents(rel);
      if (base === OPAQUE_MARKER) {
        native.lsetxattr(dirAbs, 'trusted.overlay.opaque', Buffer.from('y'));
      } else if (!base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
        const hidden = base.slice(WHITEOUT_PREFIX.length);
        const hiddenRel = dirRel === '.' ? hidden : `${dirRel}/${hidden}`;
        const target = posix.join(root, hiddenRel);
        await clearFor(target, false);
        native.mknod(target, native.fileTypes.S_IFCHR | 0o000, 0, 0);
        nonDirectories.add(hiddenRel);
        stats.entries++;
      }
      continue;
    }

    await ensureParents(rel);
    const isDir = header.typeflag === '5';
    await clearFor(abs, isDir);
    if (!isDir) nonDirectories.add(rel);
    else nonDirectories.delete(rel);

    switch (header.typeflag) {
      case '0':
      case '\0':
      case '':
      case '7': {
        options.onFileBytes?.(size);
        stats.fileBytes += size;
        const handle = await fsp.open(abs, WRITE_FLAGS, 0o600);
        try {
          for await (const piece of reader.pieces(size)) await handle.write(piece);
        } finally {
          await handle.close();
        }
        await reader.skip(padding(size));
        break;
      }
      case '5':
        await fsp.mkdir(abs, { recursive: true, mode: 0o755 });
        await reader.skip(dataSize + padding(dataSize));
        break;
      case '2':
        await reader.skip(dataSize + padding(dataSize));
        await fsp.symlink(linkname, abs);
        break;
      case '1': {
        await reader.skip(dataSize + padding(dataSize));
        const targetRel = safeRelativePath(linkname);
        if (targetRel === '') throw invalidArgument(`layer entry "${name}" is a hardlink to the layer root`);
        checkParents(targetRel);
        const targetAbs = posix.join(root, targetRel);
        let target;
        try {
          target = await fsp.lstat(targetAbs);
        } catch {
          throw invalidArgument(`layer entry "${name}" is a hardlink to "${linkname}", which is not in this layer`);
        }
        if (target.isDirectory()) throw invalidArgument(`layer entry "${name}" is a hardlink to a directory`);
        await fsp.link(targetAbs, abs);
        stats.entries++;
        continue; // a hardlink shares its target's metadata
      }
      case '3':
      case '4':
      case '6': {
        await reader.skip(dataSize + padding(dataSize));
        const type = header.typeflag === '3' ? native.fileTypes.S_IFCHR : header.typeflag === '4' ? native.fileTypes.S_IFBLK : native.fileTypes.S_IFIFO;
        native.mknod(abs, type | (header.mode & 0o7777), header.devmajor, header.devminor);
        break;
      }
      default:
        throw invalidArgument(`layer entry "${name}" has an unsupported tar type "${header.typeflag}"`);
    }
    stats.entries++;

    const isSymlink = header.typeflag === '2';
    await fsp.lchown(abs, uid, gid);
    // After chown, which clears set-id bits.
    if (!isSymlink) await fsp.chmod(abs, header.mode & 0o7777);
    for (const [key, value] of xattrs) {
      try {
        native.lsetxattr(abs, key, value);
      } catch (err) {
        // Filesystems without user xattrs or symlinks in user.* namespace: skip what cannot be kept.
        const errno = (err as { errno?: number }).errno;
        if (errno !== 95 /* ENOTSUP */ && errno !== 1 /* EPERM */) throw err;
      }
    }
    if (isDir) directoryTimes.push({ path: abs, mtime });
    else await fsp.lutimes(abs, mtime, mtime);
  }
  // Directory times last: creating their children changed them.
  for (const dir of directoryTimes.reverse()) await fsp.utimes(dir.path, dir.mtime, dir.mtime);
  // Read whatever follows the end marker so the caller's digest covers the whole stream.
  for (;;) {
    const rest = await reader.read(BLOCK).catch(() => null);
    if (rest === null) break;
  }
  return stats;
}
