// A container's volume mounts that runc 1.1 cannot make itself, prepared by
// berthd under <container dir>/mounts/<index> before runc runs, so runc only
// bind-mounts a ready path:
//   - recursive read-only (KEP-3857): every submount read-only too;
//   - idmapped with the pod's user namespace (hostUsers: false, KEP-127), so
//     files keep their on-disk ids as the container's ids;
//   - image volumes (Mount.image, KEP-4639): the image's layers as a read-only
//     overlay, optionally a directory of it (image_sub_path).
// Every prepared mount lives under <dir>/mounts, and /proc/self/mountinfo is
// the record of them: releasing detaches whatever is mounted there, so a crash
// at any step leaves nothing that the container's removal does not find. Once
// runc has created the container, its mount namespace holds its own copies and
// berthd's are released (create-container.ts): a host mount namespace copy
// would keep a volume's submount point busy (EBUSY) for the host.
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { IDMapping__Output } from '../../cri-proto/generated/runtime/v1/IDMapping';
import type { Mount__Output } from '../../cri-proto/generated/runtime/v1/Mount';
import type { BerthNative } from '../../native';
import { asBerthError, describeError, internal, invalidArgument, isBerthError, notFound } from '../errors';
import type { MountFeatures } from '../host/mount-features';
import type { ContainerImageSource } from '../image/image-types';
import type { LayerHolds } from '../image/layer-gc';
import { OVERLAY_SAFETY_OPTIONS } from '../image/rootfs-mounter';
import type { PodUserNamespace } from '../sandbox/sandbox-types';

export interface PrepareMountsInput {
  containerId: string;
  /** The container's own directory; prepared mounts go under <dir>/mounts. */
  dir: string;
  mounts: readonly Mount__Output[];
  userNamespace: PodUserNamespace | undefined;
  native: BerthNative;
  images: Pick<ContainerImageSource, 'forContainer'>;
  holds?: Pick<LayerHolds, 'holdImageAsVolume'>;
}

/** Whether a mount request needs a host-side mount before runc (and so an entry under <dir>/mounts). */
export function needsPreparation(m: Mount__Output, userNamespace: PodUserNamespace | undefined): boolean {
  return Boolean(m.image?.image) || m.recursive_read_only || userNamespace !== undefined;
}

/**
 * What the CRI refuses in mounts, checked before anything is made (INVALID_ARGUMENT naming the field).
 * rro: read-only and private propagation only (KEP-3857), and only where the host can do it.
 */
export function validateMountRequests(mounts: readonly Mount__Output[], features: MountFeatures, userNamespace: PodUserNamespace | undefined): void {
  mounts.forEach((m, i) => {
    const field = `config.mounts[${i}]`;
    const image = m.image?.image ?? '';
    if (image && m.host_path) throw invalidArgument(`${field}: host_path and image are exclusive (an image volume has no host path)`);
    if (!image && m.image_sub_path) throw invalidArgument(`${field}.image_sub_path: only applies to an image volume (image is empty)`);
    if (m.recursive_read_only) {
      if (!m.readonly) throw invalidArgument(`${field}.recursive_read_only: needs readonly to be true`);
      if (m.propagation !== 'PROPAGATION_PRIVATE') throw invalidArgument(`${field}.recursive_read_only: needs propagation PROPAGATION_PRIVATE, got ${m.propagation}`);
      if (!features.recursiveReadOnly.supported) throw invalidArgument(`${field}.recursive_read_only: not supported on this host (${features.recursiveReadOnly.reason})`);
    }
    if (userNamespace && m.propagation !== 'PROPAGATION_PRIVATE' && !image) {
      throw invalidArgument(`${field}.propagation: ${m.propagation} is not possible for an idmapped mount (the pod has its own user namespace); use PROPAGATION_PRIVATE`);
    }
    for (const [kind, list] of [['uidMappings', m.uidMappings], ['gidMappings', m.gidMappings]] as const) {
      if (list.length === 0) continue;
      const pod = kind === 'uidMappings' ? userNamespace?.uids : userNamespace?.gids;
      if (!pod) throw invalidArgument(`${field}.${kind}: an idmapped mount needs the pod to have its own user namespace`);
      if (!sameAsPod(list, pod)) throw invalidArgument(`${field}.${kind}: must be the pod's mapping (${pod.containerId} ${pod.hostId} ${pod.size})`);
    }
  });
}

function sameAsPod(list: IDMapping__Output[], pod: { containerId: number; hostId: number; size: number }): boolean {
  return list.length === 1 && list[0].container_id === pod.containerId && list[0].host_id === pod.hostId && list[0].length === pod.size;
}

/**
 * Prepares every mount that needs it; returns, per config.mounts index, the path runc
 * binds instead of host_path ("" where the request's host path is bound as it is).
 * On failure, whatever was prepared is released before the error is thrown.
 */
export function prepareMounts(input: PrepareMountsInput): string[] {
  const sources: string[] = [];
  try {
    input.mounts.forEach((m, i) => {
      sources.push(needsPreparation(m, input.userNamespace) ? prepareOne(input, m, i) : '');
    });
    return sources;
  } catch (err) {
    try {
      releasePreparedMounts(input.native, input.dir);
    } catch (releaseErr) {
      throw internal(`${describeError(err)}; and releasing the mounts prepared so far failed: ${describeError(releaseErr)}`);
    }
    throw asBerthError(err, 'preparing the container mounts');
  }
}

function prepareOne(input: PrepareMountsInput, m: Mount__Output, i: number): string {
  const field = `config.mounts[${i}]`;
  const usernsPath = input.userNamespace?.path ?? '';
  const target = join(input.dir, 'mounts', String(i));
  mkdirSync(join(input.dir, 'mounts'), { recursive: true, mode: 0o711 });
  const image = m.image?.image ?? '';
  if (image) {
    let layerDirs: string[];
    let imageId: string;
    try {
      const found = input.images.forContainer(image);
      layerDirs = found.layerDirs;
      imageId = found.image.id;
    } catch (err) {
      if (isBerthError(err, 'NotFound')) throw notFound(`${field}.image: image "${image}" is not present on this node; pull it first`);
      throw err;
    }
    input.holds?.holdImageAsVolume(input.containerId, imageId);
    mkdirSync(target, { mode: 0o755 });
    mountImageLayers(input.native, [...layerDirs].reverse(), target, usernsPath, field);
    return m.image_sub_path ? subPathOf(target, m.image_sub_path, `${field}.image_sub_path`) : target;
  }
  if (!m.host_path) throw invalidArgument(`${field}.host_path: is empty`);
  let source: string;
  try {
    // The CRI: a symlinked host path mounts the link's target.
    source = realpathSync(m.host_path);
  } catch {
    throw invalidArgument(`${field}.host_path: host path "${m.host_path}" does not exist`);
  }
  if (statSync(source).isDirectory()) mkdirSync(target, { mode: 0o755 });
  else closeSync(openSync(target, 'w', 0o644));
  try {
    input.native.bindMountTree(source, target, { recursive: true, readonly: m.recursive_read_only, usernsPath });
  } catch (err) {
    const what = [m.recursive_read_only ? 'recursive read-only' : '', usernsPath ? 'idmapped' : ''].filter(Boolean).join(', ');
    throw invalidArgument(`${field}: "${m.host_path}" cannot be mounted ${what}: ${describeError(err)}`);
  }
  return target;
}

/** The image's layers, read-only: an overlay without upper dir (one layer alone: a read-only bind of it). */
function mountImageLayers(native: BerthNative, topFirst: string[], target: string, usernsPath: string, field: string): void {
  try {
    if (usernsPath) native.mountIdmappedOverlay(topFirst, '', '', target, true, usernsPath);
    else if (topFirst.length === 1) native.bindMountTree(topFirst[0], target, { recursive: false, readonly: true, usernsPath: '' });
    else native.mountOverlay(topFirst, '', '', target, true, [...OVERLAY_SAFETY_OPTIONS]);
  } catch (err) {
    throw internal(`${field}: mounting the image's layers at ${target}: ${describeError(err)}`);
  }
}

/**
 * A path inside the mounted image, walked one component at a time: no "..",
 * no symlink anywhere on the way (a link could point out of the image), and it must exist.
 */
export function subPathOf(root: string, subPath: string, field: string): string {
  const parts = subPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) return root;
  if (parts.includes('..')) throw invalidArgument(`${field}: "${subPath}" may not contain ".."`);
  let current = root;
  for (const [n, part] of parts.entries()) {
    current = join(current, part);
    let st;
    try {
      st = lstatSync(current);
    } catch {
      throw invalidArgument(`${field}: "${subPath}" does not exist in the image`);
    }
    if (st.isSymbolicLink()) throw invalidArgument(`${field}: "${subPath}" passes through a symlink ("${parts.slice(0, n + 1).join('/')}") in the image`);
    if (n < parts.length - 1 && !st.isDirectory()) throw invalidArgument(`${field}: "${parts.slice(0, n + 1).join('/')}" is not a directory in the image`);
  }
  return current;
}

/**
 * Detaches every mount under <dir>/mounts, deepest first, and checks none is
 * left: the container's directory is only ever removed over plain files, never
 * through a bind mount of a volume. Nothing mounted there is fine.
 */
export function releasePreparedMounts(native: BerthNative, dir: string, mountInfo = '/proc/self/mountinfo'): void {
  const prefix = `${join(dir, 'mounts')}/`;
  // The mounts directory is made with the first prepared mount: without it nothing can be mounted there,
  // and the mount table (hundreds of lines on a full node) is not read for every container.
  if (!existsSync(join(dir, 'mounts'))) return;
  const under = (): string[] =>
    readFileSync(mountInfo, 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
      .filter((p): p is string => Boolean(p) && p.startsWith(prefix));
  for (let round = 0; round < 8; round++) {
    const mounted = under().sort((a, b) => b.length - a.length);
    if (mounted.length === 0) return;
    for (const path of mounted) {
      try {
        native.umount2(path, native.mountFlags.MNT_DETACH);
      } catch {
        // Stacked mounts or one already detached with its parent: the next round sees what is left.
      }
    }
  }
  const left = under();
  if (left.length > 0) throw internal(`mounts under ${prefix} could not be detached: ${left.join(', ')}`);
}
