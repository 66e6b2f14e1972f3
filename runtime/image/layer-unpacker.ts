// Unpacks one layer's tar stream into its own directory, overlay-ready: whiteouts
// become 0:0 character devices, opaque markers the trusted.overlay.opaque xattr;
// hardlinks, symlinks, devices, fifos, xattrs, ownership, modes and mtimes are
// kept. Every path is checked first: nothing is ever written outside `root`
// (no "..", no absolute names, no writes through a symlink, no hardlink to a
// file outside the layer). The caller unpacks into a fresh temporary directory
// and removes it whole on failure.
import * as fs from 'node:fs';
import { posix } from 'node:path';
import { loadNative, type BerthNative } from '../../native';
import { invalidArgument } from '../errors';

const BLOCK = 512;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const S_ISGID = 0o2000;
const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

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

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

/** Writes all of `data` at the file's current offset. */
function writeFully(fd: number, data: Buffer): void {
  let at = 0;
  while (at < data.length) at += fs.writeSync(fd, data, at, data.length - at);
}

/**
 * Unpacks a tar stream into `root` (an existing, empty directory).
 *
 * File system calls are synchronous: this runs in a layer worker thread
 * (layer-unpack-worker.ts), where blocking costs nothing and an await per
 * syscall would cost a thread-pool round trip each.
 */
export async function unpackLayer(tar: AsyncIterable<Buffer>, root: string, options: UnpackOptions = {}): Promise<UnpackStats> {
  const native = options.native ?? loadNative();
  const reader = new ByteReader(tar[Symbol.asyncIterator]());
  const stats: UnpackStats = { entries: 0, fileBytes: 0 };
  // Paths (relative) this layer made symlinks or non-directories: no later entry may be written beneath one.
  const nonDirectories = new Set<string>();
  // What this layer has put on disk so far. `root` starts empty, so a path in neither set does not exist
  // and needs no lstat before it is created; a path in `directories` is a directory (no mkdir needed).
  const present = new Set<string>();
  const directories = new Set<string>(['.']);
  const directoryTimes: { path: string; mtime: number }[] = [];
  let globalPax = new Map<string, Buffer>();
  let pax = new Map<string, Buffer>();
  let gnuLongName: string | undefined;
  let gnuLongLink: string | undefined;
  // Every metadata syscall dirties the inode again (a journal handle on ext4 with a journal): set owner
  // and mode only when creation did not already give the entry the right ones.
  const umask = process.umask();
  const ownUid = process.geteuid?.() ?? -1;
  const ownGid = process.getegid?.() ?? -1;
  // Below a set-group-ID directory new entries take the directory's group (and new directories the bit): then always set both.
  let setgidBelow = (fs.statSync(root).mode & S_ISGID) !== 0;
  const needsChown = (uid: number, gid: number): boolean => setgidBelow || uid !== ownUid || gid !== ownGid;
  const needsChmod = (mode: number): boolean => setgidBelow || (mode & 0o7000) !== 0 || (mode & umask) !== 0;

  const checkParents = (rel: string): void => {
    let slash = rel.indexOf('/');
    while (slash > 0) {
      const parent = rel.slice(0, slash);
      if (nonDirectories.has(parent)) throw invalidArgument(`layer entry "${rel}" would be written through the symlink or file "${parent}"`);
      slash = rel.indexOf('/', slash + 1);
    }
  };

  const ensureParents = (rel: string): void => {
    const parent = posix.dirname(rel);
    if (directories.has(parent)) return;
    fs.mkdirSync(posix.join(root, parent), { recursive: true, mode: 0o755 });
    for (let dir = parent; dir !== '.' && !directories.has(dir); dir = posix.dirname(dir)) {
      directories.add(dir);
      present.add(dir);
    }
  };

  /** Forgets `rel` and, when it was a directory, everything below it. */
  const forget = (rel: string): void => {
    present.delete(rel);
    if (!directories.delete(rel)) return;
    const prefix = `${rel}/`;
    for (const set of [present, directories, nonDirectories]) {
      for (const path of set) if (path.startsWith(prefix)) set.delete(path);
    }
  };

  /** Removes what is at `rel` unless it is a directory that stays a directory. */
  const clearFor = (rel: string, keepDirectory: boolean): void => {
    if (!present.has(rel)) return;
    const abs = posix.join(root, rel);
    try {
      const st = fs.lstatSync(abs);
      if (st.isDirectory()) {
        if (keepDirectory) return;
        fs.rmSync(abs, { recursive: true, force: true });
      } else {
        fs.unlinkSync(abs);
      }
    } catch (err) {
      ignoreMissing(err);
    }
    forget(rel);
  };

  const setXattrs = (abs: string, xattrs: [string, Buffer][]): void => {
    for (const [key, value] of xattrs) {
      try {
        native.lsetxattr(abs, key, value);
      } catch (err) {
        // Filesystems without user xattrs or symlinks in user.* namespace: skip what cannot be kept.
        const errno = (err as { errno?: number }).errno;
        if (errno !== 95 /* ENOTSUP */ && errno !== 1 /* EPERM */) throw err;
      }
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

    const records = globalPax.size === 0 ? pax : new Map([...globalPax, ...pax]);
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
      ensureParents(rel);
      if (base === OPAQUE_MARKER) {
        native.lsetxattr(dirAbs, 'trusted.overlay.opaque', Buffer.from('y'));
      } else if (!base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
        const hidden = base.slice(WHITEOUT_PREFIX.length);
        const hiddenRel = dirRel === '.' ? hidden : `${dirRel}/${hidden}`;
        clearFor(hiddenRel, false);
        native.mknod(posix.join(root, hiddenRel), native.fileTypes.S_IFCHR | 0o000, 0, 0);
        present.add(hiddenRel);
        nonDirectories.add(hiddenRel);
        stats.entries++;
      }
      continue;
    }

    ensureParents(rel);
    const isDir = header.typeflag === '5';
    clearFor(rel, isDir);
    if (!isDir) nonDirectories.add(rel);
    else nonDirectories.delete(rel);
    const mode = header.mode & 0o7777;
    let needsMode = false;

    switch (header.typeflag) {
      case '0':
      case '\0':
      case '':
      case '7': {
        options.onFileBytes?.(size);
        stats.fileBytes += size;
        const fd = fs.openSync(abs, WRITE_FLAGS, mode & 0o777);
        present.add(rel);
        try {
          for await (const piece of reader.pieces(size)) writeFully(fd, piece);
          // Through the descriptor: no path walk per call. chmod after chown, which clears set-id bits.
          if (needsChown(uid, gid)) fs.fchownSync(fd, uid, gid);
          if (needsChmod(mode)) fs.fchmodSync(fd, mode);
          setXattrs(abs, xattrs);
          fs.futimesSync(fd, mtime, mtime);
        } finally {
          fs.closeSync(fd);
        }
        await reader.skip(padding(size));
        stats.entries++;
        continue;
      }
      case '5':
        // A directory that exists already (made for an earlier entry's path) has some other mode.
        if (directories.has(rel)) needsMode = true;
        else fs.mkdirSync(abs, { mode: mode & 0o777 });
        present.add(rel);
        directories.add(rel);
        if (mode & S_ISGID) setgidBelow = true;
        await reader.skip(dataSize + padding(dataSize));
        break;
      case '2':
        await reader.skip(dataSize + padding(dataSize));
        fs.symlinkSync(linkname, abs);
        present.add(rel);
        break;
      case '1': {
        await reader.skip(dataSize + padding(dataSize));
        const targetRel = safeRelativePath(linkname);
        if (targetRel === '') throw invalidArgument(`layer entry "${name}" is a hardlink to the layer root`);
        checkParents(targetRel);
        const targetAbs = posix.join(root, targetRel);
        let target;
        try {
          target = fs.lstatSync(targetAbs);
        } catch {
          throw invalidArgument(`layer entry "${name}" is a hardlink to "${linkname}", which is not in this layer`);
        }
        if (target.isDirectory()) throw invalidArgument(`layer entry "${name}" is a hardlink to a directory`);
        fs.linkSync(targetAbs, abs);
        present.add(rel);
        stats.entries++;
        continue; // a hardlink shares its target's metadata
      }
      case '3':
      case '4':
      case '6': {
        await reader.skip(dataSize + padding(dataSize));
        const type = header.typeflag === '3' ? native.fileTypes.S_IFCHR : header.typeflag === '4' ? native.fileTypes.S_IFBLK : native.fileTypes.S_IFIFO;
        native.mknod(abs, type | (mode & 0o777), header.devmajor, header.devminor);
        present.add(rel);
        break;
      }
      default:
        throw invalidArgument(`layer entry "${name}" has an unsupported tar type "${header.typeflag}"`);
    }
    stats.entries++;

    const isSymlink = header.typeflag === '2';
    if (needsChown(uid, gid)) fs.lchownSync(abs, uid, gid);
    // After chown, which clears set-id bits.
    if (!isSymlink && (needsMode || needsChmod(mode))) fs.chmodSync(abs, mode);
    setXattrs(abs, xattrs);
    if (isDir) directoryTimes.push({ path: abs, mtime });
    else fs.lutimesSync(abs, mtime, mtime);
  }
  // Directory times last: creating their children changed them.
  for (const dir of directoryTimes.reverse()) {
    try {
      fs.utimesSync(dir.path, dir.mtime, dir.mtime);
    } catch (err) {
      // A later entry replaced the directory (and set its own times).
      ignoreMissing(err);
    }
  }
  // Read whatever follows the end marker so the caller's digest covers the whole stream.
  for (;;) {
    const rest = await reader.read(BLOCK).catch(() => null);
    if (rest === null) break;
  }
  return stats;
}
