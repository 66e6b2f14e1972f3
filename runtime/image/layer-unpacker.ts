// Unpacks one layer's tar stream into its own directory, overlay-ready: whiteouts
// become 0:0 character devices, opaque markers the trusted.overlay.opaque xattr;
// hardlinks, symlinks, devices, fifos, ownership, modes, mtimes and the xattrs a
// container may own (layerXattrAllowed) are kept. Every path is checked first: nothing is ever written outside `root`
// (no "..", no absolute names, no writes through a symlink, no hardlink to a
// file outside the layer). The caller unpacks into a fresh temporary directory
// and removes it whole on failure.
import * as fs from 'node:fs';
import { posix } from 'node:path';
import { loadNative, type BerthNative } from '../../native';
import { invalidArgument } from '../errors';
import { TarReader } from './tar-reader';

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const S_ISGID = 0o2000;
const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

export interface UnpackStats {
  /** Entries created (an inode count, hardlinks included). */
  entries: number;
  /** Logical bytes of regular files. */
  fileBytes: number;
  /** Names of the xattrs the layer carried that were not applied (distinct, at most 16). */
  droppedXattrs: string[];
}

const MAX_DROPPED_NAMES = 16;

/**
 * Whether an xattr from a layer is applied. A layer's xattrs are the image author's word:
 * trusted.* is read by the host kernel's privileged users (overlayfs acts on
 * trusted.overlay.redirect/metacopy/opaque/whiteout), and security.* other than file
 * capabilities speaks to host security modules (SELinux labels, IMA/EVM); neither is the
 * image's to set. File capabilities (bounded by the container's own capability set),
 * user.* and POSIX ACLs are the files' own. containerd applies every xattr and CRI-O all
 * but security.selinux; berth is stricter on purpose.
 */
export function layerXattrAllowed(name: string): boolean {
  return name.startsWith('user.') || name === 'security.capability' || name === 'system.posix_acl_access' || name === 'system.posix_acl_default';
}

/** The entry's path inside the layer, normalized; refuses anything that could leave it. */
export function safeRelativePath(name: string): string {
  if (name.includes('\0')) throw invalidArgument(`layer entry "${name}" has a NUL byte`);
  if (name.startsWith('/')) throw invalidArgument(`layer entry "${name}" is an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalidArgument(`layer entry "${name}" escapes the layer ("..")`);
  return parts.join('/');
}

/** Limits shared with other layers (the image's caps, image-budget.ts): each call throws once over. */
export interface UnpackBudget {
  /** One more entry made (file, directory, link, device, whiteout). */
  entry(): void;
  /** A regular file's logical size, before it is written. */
  fileBytes(bytes: number): void;
}

export interface UnpackOptions {
  budget?: UnpackBudget;
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
  const reader = new TarReader(tar);
  const stats: UnpackStats = { entries: 0, fileBytes: 0, droppedXattrs: [] };
  const countEntry = (): void => {
    options.budget?.entry();
    stats.entries++;
  };
  // Paths (relative) this layer made symlinks or non-directories: no later entry may be written beneath one.
  const nonDirectories = new Set<string>();
  // What this layer has put on disk so far. `root` starts empty, so a path in neither set does not exist
  // and needs no lstat before it is created; a path in `directories` is a directory (no mkdir needed).
  const present = new Set<string>();
  const directories = new Set<string>(['.']);
  const directoryTimes: { path: string; mtime: number }[] = [];
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
      if (!layerXattrAllowed(key)) {
        if (stats.droppedXattrs.length < MAX_DROPPED_NAMES && !stats.droppedXattrs.includes(key)) stats.droppedXattrs.push(key);
        continue;
      }
      try {
        native.lsetxattr(abs, key, value);
      } catch (err) {
        // Filesystems without user xattrs or symlinks in user.* namespace: skip what cannot be kept.
        const errno = (err as { errno?: number }).errno;
        if (errno !== 95 /* ENOTSUP */ && errno !== 1 /* EPERM */) throw err;
      }
    }
  };

  for (let entry = await reader.next(); entry !== null; entry = await reader.next()) {
    const { name, linkname, size, uid, gid, mtime, xattrs } = entry;
    const rel = safeRelativePath(name);
    const base = posix.basename(rel);
    // The layer root itself: nothing to create.
    if (rel === '') continue;
    checkParents(rel);
    const abs = posix.join(root, rel);

    if (base.startsWith(WHITEOUT_PREFIX)) {
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
        countEntry();
      }
      continue;
    }

    ensureParents(rel);
    const isDir = entry.typeflag === '5';
    clearFor(rel, isDir);
    if (!isDir) nonDirectories.add(rel);
    else nonDirectories.delete(rel);
    const mode = entry.mode & 0o7777;
    let needsMode = false;

    switch (entry.typeflag) {
      case '0':
      case '\0':
      case '':
      case '7': {
        options.budget?.fileBytes(size);
        stats.fileBytes += size;
        const fd = fs.openSync(abs, WRITE_FLAGS, mode & 0o777);
        present.add(rel);
        try {
          for await (const piece of reader.data(entry)) writeFully(fd, piece);
          // Through the descriptor: no path walk per call. chmod after chown, which clears set-id bits.
          if (needsChown(uid, gid)) fs.fchownSync(fd, uid, gid);
          if (needsChmod(mode)) fs.fchmodSync(fd, mode);
          setXattrs(abs, xattrs);
          fs.futimesSync(fd, mtime, mtime);
        } finally {
          fs.closeSync(fd);
        }
        countEntry();
        continue;
      }
      case '5':
        // A directory that exists already (made for an earlier entry's path) has some other mode.
        if (directories.has(rel)) needsMode = true;
        else fs.mkdirSync(abs, { mode: mode & 0o777 });
        present.add(rel);
        directories.add(rel);
        if (mode & S_ISGID) setgidBelow = true;
        break;
      case '2':
        fs.symlinkSync(linkname, abs);
        present.add(rel);
        break;
      case '1': {
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
        countEntry();
        continue; // a hardlink shares its target's metadata
      }
      case '3':
      case '4':
      case '6': {
        const type = entry.typeflag === '3' ? native.fileTypes.S_IFCHR : entry.typeflag === '4' ? native.fileTypes.S_IFBLK : native.fileTypes.S_IFIFO;
        native.mknod(abs, type | (mode & 0o777), entry.devmajor, entry.devminor);
        present.add(rel);
        break;
      }
      default:
        throw invalidArgument(`layer entry "${name}" has an unsupported tar type "${entry.typeflag}"`);
    }
    countEntry();

    const isSymlink = entry.typeflag === '2';
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
  await reader.drain();
  return stats;
}
