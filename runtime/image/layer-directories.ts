// Unpacked layers on disk: <root>/layers/<dir-id>/diff, one directory per
// layer, made under a tmp- name and renamed into place once complete. The
// directory ids are short because overlay's option string has to fit many.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '../../native/run-command';
import { removeTreeUnlessMounted } from '../common/mount-table';
import { findBinary } from '../host/binaries';

const TEMP_PREFIX = 'tmp-';

/** Removes a file or a tree; nothing there, or a failure, is not an error (the caller is cleaning up). */
export async function removeQuietly(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Marks `dir` as a top of directory hierarchies (chattr +T) on ext2/3/4, where each new
 * subdirectory then goes to its own block group as top-level directories do. Layers are
 * unrelated trees, and a layer unpacked beside the inodes of one just removed pays dearly
 * on ext4 without a journal: it skips each recently freed inode one at a time (~0.1-0.2 ms
 * per created file after a removal of a large image). Elsewhere the flag is refused: nothing changes.
 */
function spreadSubdirectories(dir: string): void {
  // Not awaited: a layer unpacked before it takes effect is merely not spread. Started by the addon's
  // posix_spawn (runCommand): child_process forks berthd's heap on the event loop, ~10 ms of every start.
  void findBinary('chattr')
    .then((chattr) => (chattr ? runCommand(chattr, ['+T', dir], { timeoutMs: 5_000 }) : undefined))
    .catch(() => undefined);
}

export class LayerDirectories {
  readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'layers');
  }

  /** Creates the directory; what interrupted work left in it is collected in the background (LayerGc.collectStrays). */
  init(): void {
    // 0700: a layer holds an image's setuid binaries and devices (runtime/store/store-permissions.ts).
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    spreadSubdirectories(this.dir);
  }

  /** Every name in layers/: layer directories, and temporary ones (isTemp). */
  entries(): Promise<string[]> {
    return fsp.readdir(this.dir);
  }

  /** A name an unpack is (or was, before a crash) writing under; never a layer's. */
  isTemp(name: string): boolean {
    return name.startsWith(TEMP_PREFIX);
  }

  /** The directory overlay mounts for a layer. */
  diffOf(dirId: string): string {
    return join(this.dir, dirId, 'diff');
  }

  has(dirId: string): boolean {
    return existsSync(this.diffOf(dirId));
  }

  /** A fresh name for a layer being unpacked (removed at the next start if it is never installed). */
  tempRootFor(suffix: string): string {
    return join(this.dir, `${TEMP_PREFIX}${suffix}`);
  }

  /**
   * A short directory id for a layer: the shortest prefix of its diff id's hex that no other
   * layer's row owns (`ownerOf`) and no stray directory occupies.
   */
  pickDirId(diffId: string, ownerOf: (dirId: string) => string | undefined): string {
    const hex = diffId.slice('sha256:'.length);
    for (let length = 12; length <= hex.length; length += 4) {
      const candidate = hex.slice(0, length);
      const owner = ownerOf(candidate);
      if ((owner === undefined || owner === diffId) && (owner !== undefined || !existsSync(join(this.dir, candidate)))) return candidate;
    }
    return `${hex}-${randomBytes(4).toString('hex')}`;
  }

  /** Moves a completely unpacked layer (a temp root holding diff/) to its directory, replacing what was there. */
  async install(tempRoot: string, dirId: string): Promise<void> {
    const finalDir = join(this.dir, dirId);
    await removeQuietly(finalDir);
    // Never reachable by others even should layers/ itself be opened up: diff/ keeps the image's own root mode.
    await fsp.chmod(tempRoot, 0o700);
    await fsp.rename(tempRoot, finalDir);
  }

  /**
   * Removes a layer directory, or any name in layers/, unless something is mounted on or below it
   * (a removal would reach into the mount); resolves with the mount points that kept it.
   */
  async remove(name: string): Promise<string[]> {
    return removeTreeUnlessMounted(join(this.dir, name));
  }
}
