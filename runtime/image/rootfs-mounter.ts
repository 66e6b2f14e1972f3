// Container root filesystems as overlay(image layers + per-container upper dir).
// The new mount API takes each lower layer on its own ("lowerdir+"), so any
// number of layers fits; on kernels without it, mount(2) with the classic
// option string is used, which must fit in one page.
import { chownSync, mkdirSync, statSync } from 'node:fs';
import { loadNative, type BerthNative, type IdMapping, type NativeError } from '../../native';
import { describeError, internal, invalidArgument } from '../errors';
import type { RootfsIdmap, RootfsMounter } from './image-types';

const PAGE_SIZE = 4096;

/**
 * Pinned on every container root filesystem, whatever the kernel's or the module's defaults:
 * overlay must not act on trusted.overlay.redirect or .metacopy in a layer. The unpacker drops
 * such xattrs from layers already (layer-unpacker.ts); this holds for layers it did not write.
 * With nofollow a redirected directory is refused (EPERM), never looked up elsewhere.
 */
export const OVERLAY_SAFETY_OPTIONS: readonly [string, string][] = [
  ['redirect_dir', 'nofollow'],
  ['metacopy', 'off'],
];
const ENOENT = 2;
const EINVAL = 22;
/** Mounts stacked on one rootfs that unmount detaches before it gives up. */
const MAX_STACKED_UNMOUNTS = 16;
const ENOSYS = 38;

export class OverlayRootfsMounter implements RootfsMounter {
  private newApi: boolean | undefined;

  constructor(private readonly native: BerthNative = loadNative()) {}

  mount(options: { layerDirs: string[]; upperDir: string; workDir: string; target: string; readonly?: boolean; idmap?: RootfsIdmap }): void {
    const { layerDirs, upperDir, workDir, target } = options;
    if (layerDirs.length === 0) throw invalidArgument('an overlay root filesystem needs at least one layer');
    for (const dir of [...layerDirs, upperDir, workDir, target]) {
      if (/[,:]/.test(dir)) throw invalidArgument(`overlay path "${dir}" contains "," or ":"`);
    }
    mkdirSync(upperDir, { recursive: true, mode: 0o755 });
    mkdirSync(workDir, { recursive: true, mode: 0o700 });
    mkdirSync(target, { recursive: true, mode: 0o755 });
    const topFirst = [...layerDirs].reverse();
    if (options.idmap) {
      this.mountIdmapped(topFirst, upperDir, workDir, target, options.readonly ?? false, options.idmap);
      return;
    }
    if (this.newApi !== false) {
      try {
        this.native.mountOverlay(topFirst, upperDir, workDir, target, options.readonly ?? false, [...OVERLAY_SAFETY_OPTIONS]);
        this.newApi = true;
        return;
      } catch (err) {
        const errno = (err as NativeError).errno;
        // ENOSYS: no fsopen; EINVAL at lowerdir+: a kernel before 6.8.
        if (!(errno === ENOSYS || (errno === EINVAL && this.newApi === undefined && /lowerdir\+/.test(describeError(err))))) {
          throw internal(`overlay mount at ${target} failed: ${describeError(err)}`, err);
        }
        this.newApi = false;
      }
    }
    const safety = OVERLAY_SAFETY_OPTIONS.map(([key, value]) => `,${key}=${value}`).join('');
    const data = `lowerdir=${topFirst.join(':')},upperdir=${upperDir},workdir=${workDir}${safety}`;
    if (data.length >= PAGE_SIZE) {
      throw invalidArgument(`the image has too many layers (${layerDirs.length}) for an overlay mount on this kernel (options exceed one page)`);
    }
    try {
      this.native.mount('overlay', target, 'overlay', options.readonly ? this.native.mountFlags.MS_RDONLY : 0, data);
    } catch (err) {
      throw internal(`overlay mount at ${target} failed: ${describeError(err)}`, err);
    }
  }

  /**
   * The layers idmapped with the pod's user namespace (overlayfs itself cannot be
   * idmapped: native/src/prepared_mounts.cc). The upper dir holds host ids: what the
   * container's root writes is owned by its host uid, as runc 1.1 would chown it.
   */
  private mountIdmapped(topFirst: string[], upperDir: string, workDir: string, target: string, readonly: boolean, idmap: RootfsIdmap): void {
    // The upper dir was given the image root's owner; the container sees it through the mapping.
    const st = statSync(upperDir);
    chownSync(upperDir, mappedId(st.uid, idmap.uids), mappedId(st.gid, idmap.gids));
    try {
      this.native.mountIdmappedOverlay(topFirst, upperDir, workDir, target, readonly, idmap.usernsPath);
    } catch (err) {
      throw internal(`idmapped overlay mount at ${target} failed: ${describeError(err)}`, err);
    }
  }

  /**
   * Detaches every mount stacked at `target`; throws when mounts are still there after
   * MAX_STACKED_UNMOUNTS, so that no caller goes on to remove a tree a mount still shows.
   */
  unmount(target: string): void {
    // Lazy detach: a process still holding a file inside must not keep the rootfs busy.
    for (let i = 0; i <= MAX_STACKED_UNMOUNTS; i++) {
      try {
        this.native.umount2(target, this.native.mountFlags.MNT_DETACH);
      } catch (err) {
        const errno = (err as NativeError).errno;
        if (errno === EINVAL || errno === ENOENT) return;
        throw internal(`unmounting ${target} failed: ${describeError(err)}`, err);
      }
    }
    throw internal(`${target} is still a mount point after ${MAX_STACKED_UNMOUNTS} unmounts; left in place`);
  }
}

/** The host id a container id is under a mapping (the overflow id 65534 when outside it, as the kernel shows). */
export function mappedId(id: number, m: IdMapping): number {
  return id >= m.containerId && id < m.containerId + m.size ? m.hostId + (id - m.containerId) : 65534;
}
