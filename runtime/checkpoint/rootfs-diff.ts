// A container's writable-layer changes, both ways. At checkpoint the overlay's
// upper dir is the change: every entry in it was added or modified, a 0:0
// character device is a deleted path (overlayfs' whiteout) and an opaque
// directory hides what the image had below it. They become rootfs-diff.tar
// and the deleted.files list. At restore the tar is unpacked into the new
// container's empty upper dir before its overlay is mounted, and the deleted
// paths are removed through the mounted overlay, which whites them out.
//
// Synchronous file system calls: these run on a worker thread
// (checkpoint-worker.ts). The upper dir's content is the container's: nothing
// is followed (lstat, O_NOFOLLOW|O_NONBLOCK opens of regular files only).
import * as fs from 'node:fs';
import { posix } from 'node:path';
import type { BerthNative } from '../../native';
import { tarEnd, tarEntryHeader, writeTarFileBody, type TarEntryMeta } from '../image/archive-writer';
import { safeRelativePath, unpackLayer, type UnpackBudget } from '../image/layer-unpacker';
import { invalidArgument } from '../errors';

const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
const COPY_CHUNK = 1024 * 1024;

export interface RootfsDiffOptions {
  upperDir: string;
  /** The image's layer directories, top-most first: what an opaque directory hides is read from them. */
  lowerDirsTopFirst: string[];
  /**
   * Paths (relative to the rootfs) where the container sees a mount rather than its rootfs
   * (volumes, /proc, /etc/hosts...): they and what lies below them are left out.
   */
  mountPoints: string[];
  /** Made here (O_EXCL). */
  tarPath: string;
}

export interface RootfsDiff {
  /** Deleted paths, absolute inside the container ("/etc/motd"), as deleted.files lists them. */
  deleted: string[];
  entries: number;
  fileBytes: number;
}

function isWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function isOpaque(native: BerthNative, path: string): boolean {
  const value = native.lgetxattr(path, 'trusted.overlay.opaque');
  return value !== undefined && value.toString('latin1') === 'y';
}

/** Names the image shows in directory `rel`, merged over its layers as overlayfs merges them. */
function imageChildren(native: BerthNative, lowers: string[], rel: string): string[] {
  const visible = new Set<string>();
  const hidden = new Set<string>();
  for (const layer of lowers) {
    const dir = posix.join(layer, rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch {
      continue;
    }
    if (!st.isDirectory()) break;
    for (const name of fs.readdirSync(dir)) {
      if (visible.has(name) || hidden.has(name)) continue;
      if (isWhiteout(fs.lstatSync(posix.join(dir, name)))) hidden.add(name);
      else visible.add(name);
    }
    if (isOpaque(native, dir)) break;
  }
  return [...visible];
}

/** Linux's dev_t split (glibc's gnu_dev_major/minor). */
function deviceNumbers(rdev: bigint): { devmajor: number; devminor: number } {
  const devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { devmajor, devminor };
}

/** Writes rootfs-diff.tar of the upper dir and lists the deleted paths. */
export function writeRootfsDiff(native: BerthNative, options: RootfsDiffOptions): RootfsDiff {
  const skipped = new Set(options.mountPoints.map((p) => safeRelativePath(p.replace(/^\/+/, ''))));
  const out = fs.openSync(options.tarPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  const result: RootfsDiff = { deleted: [], entries: 0, fileBytes: 0 };
  const firstLinks = new Map<string, string>();
  const buffer = Buffer.alloc(COPY_CHUNK);
  const write = (data: Buffer): void => {
    let at = 0;
    while (at < data.length) at += fs.writeSync(out, data, at, data.length - at);
  };
  const header = (meta: TarEntryMeta): void => {
    write(tarEntryHeader(meta));
    result.entries++;
  };
  try {
    // Depth first, names sorted: a directory's entry right before its children; the same upper dir gives the same tar.
    const walk = (dirRel: string): void => {
      const dirAbs = dirRel ? posix.join(options.upperDir, dirRel) : options.upperDir;
      const names = fs.readdirSync(dirAbs).sort();
      if (dirRel && isOpaque(native, dirAbs)) {
        const present = new Set(names);
        for (const name of imageChildren(native, options.lowerDirsTopFirst, dirRel)) {
          if (!present.has(name)) result.deleted.push(`/${dirRel}/${name}`);
        }
      }
      for (const name of names) {
        const rel = dirRel ? `${dirRel}/${name}` : name;
        if (skipped.has(rel)) continue;
        const abs = posix.join(options.upperDir, rel);
        const st = fs.lstatSync(abs, { bigint: true });
        const common = { name: rel, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: 0, mtime: Number(st.mtimeMs / 1000n) };
        if (st.isCharacterDevice() && st.rdev === 0n) {
          result.deleted.push(`/${rel}`);
        } else if (st.isDirectory()) {
          header({ ...common, type: 'dir' });
          walk(rel);
        } else if (st.isSymbolicLink()) {
          header({ ...common, type: 'symlink', linkname: fs.readlinkSync(abs) });
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          const first = st.nlink > 1n ? firstLinks.get(key) : undefined;
          if (first !== undefined) {
            header({ ...common, type: 'hardlink', linkname: first });
            continue;
          }
          if (st.nlink > 1n) firstLinks.set(key, rel);
          copyFile(abs, common, header, write, buffer, result);
        } else if (st.isFIFO()) {
          header({ ...common, type: 'fifo' });
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          header({ ...common, type: st.isCharacterDevice() ? 'char' : 'block', ...deviceNumbers(st.rdev) });
        }
        // Sockets: a tar cannot hold them (nor does a restored process find its peer through one).
      }
    };
    walk('');
    write(tarEnd());
  } finally {
    fs.closeSync(out);
  }
  return result;
}

/** A regular file's bytes, exactly the size it had when its header was written (padded with zeros should it shrink meanwhile). */
function copyFile(
  abs: string, common: Omit<TarEntryMeta, 'type'>, header: (meta: TarEntryMeta) => void, write: (data: Buffer) => void, buffer: Buffer, result: RootfsDiff,
): void {
  const fd = fs.openSync(abs, READ_FLAGS);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return;
    const size = st.size;
    header({ ...common, type: 'file', size });
    writeTarFileBody(fd, size, buffer, write);
    result.fileBytes += size;
  } finally {
    fs.closeSync(fd);
  }
}

/** Caps what a restored diff may unpack (a checkpoint archive is content like any image). */
export function diffBudget(maxBytes: number, maxEntries: number): UnpackBudget {
  let bytes = 0;
  let entries = 0;
  return {
    entry() {
      if (++entries > maxEntries) throw invalidArgument(`rootfs-diff.tar: more than ${maxEntries} entries`);
    },
    fileBytes(n: number) {
      bytes += n;
      if (bytes > maxBytes) throw invalidArgument(`rootfs-diff.tar: more than ${maxBytes} bytes of files`);
    },
  };
}

/** Unpacks rootfs-diff.tar into the new container's empty upper dir. */
export async function applyRootfsDiff(native: BerthNative, tarPath: string, upperDir: string, budget: UnpackBudget): Promise<void> {
  const fd = fs.openSync(tarPath, READ_FLAGS);
  try {
    if (!fs.fstatSync(fd).isFile()) throw invalidArgument('rootfs-diff.tar is not a regular file');
    await unpackLayer(fs.createReadStream('', { fd, autoClose: false, highWaterMark: COPY_CHUNK }), upperDir, { native, budget });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Removes each deleted path through the mounted rootfs (overlayfs records a
 * whiteout). Nothing runs in the rootfs yet, so a walk that refuses symlinks
 * on the way cannot be raced: a path through a link or a file is not there.
 */
export function removeDeletedPaths(rootfs: string, deleted: readonly string[]): number {
  let removed = 0;
  for (const raw of deleted) {
    if (typeof raw !== 'string' || raw.includes('\0') || raw.split('/').includes('..')) throw invalidArgument(`deleted.files: ${JSON.stringify(raw)} is no path inside the container`);
    const rel = raw.split('/').filter((p) => p !== '' && p !== '.').join('/');
    if (!rel) continue;
    const parts = rel.split('/');
    let through = true;
    for (let i = 1; i < parts.length && through; i++) {
      try {
        through = fs.lstatSync(posix.join(rootfs, ...parts.slice(0, i))).isDirectory();
      } catch {
        through = false;
      }
    }
    if (!through) continue;
    const abs = posix.join(rootfs, rel);
    try {
      fs.lstatSync(abs);
    } catch {
      continue;
    }
    fs.rmSync(abs, { recursive: true, force: true });
    removed++;
  }
  return removed;
}
