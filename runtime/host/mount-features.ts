// Whether this host can prepare the mounts behind two runtime-handler features,
// found at start by doing them once on scratch directories, not by reading
// version numbers: runc 1.1 has neither idmapped nor recursive read-only mounts,
// so berthd prepares both host-side through the addon (native/src/prepared_mounts.cc).
//   recursive read-only: open_tree(AT_RECURSIVE) + mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE) (Linux 5.12+)
//   user namespaces: a pinned user namespace, an idmapped bind mount, and an
//   overlay over idmapped layers handed to overlayfs as fds (Linux 6.13+)
import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BerthNative } from '../../native';
import { describeError } from '../errors';

/** true, or why not (the kernel's refusal, as the addon reported it). */
export type FeatureSupport = { supported: true } | { supported: false; reason: string };

export interface MountFeatures {
  recursiveReadOnly: FeatureSupport;
  userNamespaces: FeatureSupport;
}

/** Any mapping will do for the probe: the kernel checks the shape, not the ids. */
const PROBE_MAPPING = [{ containerId: 0, hostId: 1_000_000_000, size: 65536 }];

export function probeMountFeatures(native: BerthNative, scratchParent: string): MountFeatures {
  const dir = join(scratchParent, 'mount-probe');
  // A berthd killed while probing left its mounts: detached before anything is removed.
  detachUnder(native, dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const undo: (() => void)[] = [];
  try {
    native.makePrivateMount(dir);
    undo.push(() => native.umount2(dir, native.mountFlags.MNT_DETACH));
    return {
      recursiveReadOnly: attempt(() => probeRecursiveReadOnly(native, dir, undo)),
      userNamespaces: attempt(() => probeUserNamespaces(native, dir, undo)),
    };
  } catch (err) {
    const reason = `preparing the probe directory ${dir}: ${describeError(err)}`;
    return { recursiveReadOnly: { supported: false, reason }, userNamespaces: { supported: false, reason } };
  } finally {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        // Already gone with the private mount above it.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function detachUnder(native: BerthNative, dir: string): void {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => Boolean(p) && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const path of mounted) {
    try {
      native.umount2(path, native.mountFlags.MNT_DETACH);
    } catch {
      // gone with its parent
    }
  }
}

function attempt(probe: () => void): FeatureSupport {
  try {
    probe();
    return { supported: true };
  } catch (err) {
    return { supported: false, reason: describeError(err) };
  }
}

function probeRecursiveReadOnly(native: BerthNative, dir: string, undo: (() => void)[]): void {
  const source = mkdirs(dir, 'rro-source');
  const sub = mkdirs(source, 'sub');
  native.mount('tmpfs', sub, 'tmpfs', 0, 'size=4k');
  undo.push(() => native.umount2(sub, native.mountFlags.MNT_DETACH));
  const target = mkdirs(dir, 'rro-target');
  native.bindMountTree(source, target, { recursive: true, readonly: true, usernsPath: '' });
  undo.push(() => native.umount2(target, native.mountFlags.MNT_DETACH));
}

function probeUserNamespaces(native: BerthNative, dir: string, undo: (() => void)[]): void {
  const userns = join(dir, 'userns');
  native.createPodUserNamespace({
    user: userns, net: '', ipc: '', uts: '', hostname: '', sysctls: [], loopbackUp: false, uidMappings: PROBE_MAPPING, gidMappings: PROBE_MAPPING,
  });
  undo.push(() => native.unpinNamespace(userns));
  const volume = mkdirs(dir, 'volume');
  const volumeTarget = mkdirs(dir, 'volume-target');
  native.bindMountTree(volume, volumeTarget, { recursive: true, readonly: false, usernsPath: userns });
  undo.push(() => native.umount2(volumeTarget, native.mountFlags.MNT_DETACH));
  const [lower1, lower2, upper, work, rootfs] = ['lower1', 'lower2', 'upper', 'work', 'rootfs'].map((name) => mkdirs(dir, name));
  chownSync(upper, PROBE_MAPPING[0].hostId, PROBE_MAPPING[0].hostId);
  native.mountIdmappedOverlay([lower2, lower1], upper, work, rootfs, false, userns);
  undo.push(() => native.umount2(rootfs, native.mountFlags.MNT_DETACH));
  // overlayfs falls back to read-only, with only a kernel log line, when it cannot use its work dir.
  writeFileSync(join(rootfs, 'written'), '');
}

function mkdirs(parent: string, name: string): string {
  const path = join(parent, name);
  mkdirSync(path, { recursive: true, mode: 0o755 });
  return path;
}
