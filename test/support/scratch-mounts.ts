// A temp dir of its own for tests that mount and pin: it is made a private
// mount (nothing leaks to or from the host's mounts), every mount or pin made
// under it is undone at the end even when the test failed, then it is removed.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { loadNative, type BerthNative } from '../../native';

export interface ScratchMounts {
  dir: string;
  native: BerthNative;
  /** Registers a mount target to detach at the end (last registered, first detached). */
  mounted(target: string): string;
  /** Registers a namespace pin to release at the end. */
  pinned(path: string): string;
}

export async function withScratchMounts(prefix: string, body: (scratch: ScratchMounts) => Promise<void> | void): Promise<void> {
  const native = loadNative();
  const dir = mkdtempSync(`/tmp/berth-${prefix}-`);
  // Traversable by any uid: tests act as mapped host uids below it.
  chmodSync(dir, 0o711);
  const undo: (() => void)[] = [];
  native.makePrivateMount(dir);
  undo.push(() => native.umount2(dir, native.mountFlags.MNT_DETACH));
  const scratch: ScratchMounts = {
    dir,
    native,
    mounted(target) {
      undo.push(() => native.umount2(target, native.mountFlags.MNT_DETACH));
      return target;
    },
    pinned(path) {
      undo.push(() => native.unpinNamespace(path));
      return path;
    },
  };
  try {
    await body(scratch);
  } finally {
    const errors: string[] = [];
    for (const step of undo.reverse()) {
      try {
        step();
      } catch (err) {
        // EINVAL: never mounted (the test failed before); anything else is a leak worth failing on.
        if ((err as { errno?: number }).errno !== 22) errors.push((err as Error).message);
      }
    }
    rmSync(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`scratch mounts left behind: ${errors.join('; ')}`);
  }
}

/** Linux release as [major, minor], for skipping on kernels that lack a syscall or flag. */
export function kernelVersion(): [number, number] {
  const match = /^(\d+)\.(\d+)/.exec(loadNative().uname().release);
  return match ? [Number(match[1]), Number(match[2])] : [0, 0];
}

export function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = kernelVersion();
  return a > major || (a === major && b >= minor);
}
