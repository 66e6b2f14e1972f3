// RemoveContainer and the teardown it shares with a failed create and with
// recovery: kill what runs, then remove every host trace (runtime state,
// conmon, rootfs mount, bundle, conmon's links, layer holds) and the record.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { mountPointsAtOrBelow } from '../common/mount-table';
import { describeError, internal } from '../errors';
import { conmonFiles, isConmonOf, readExit } from '../oci/conmon';
import { killQuietly, tryReadPidFile } from '../oci/host-process';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import { releasePreparedMounts } from './prepared-mounts';
import { releaseTargetPin, targetPinPath } from './pid-namespace-join';
import { stopContainer } from './stop-container';

/** Removes container `id` (a full id; the caller holds its lock). */
export async function removeContainer(ctx: ContainerContext, id: string): Promise<void> {
  const record = ctx.records.exact(id);
  if (!record) return;
  await stopContainer(ctx, id, 0).catch((err) => ctx.log.warn({ id, err: describeError(err) }, 'kill before remove failed'));
  record.phase = 'removing';
  ctx.records.save(record);
  await undoContainer(ctx, record);
  ctx.records.publish('CONTAINER_DELETED_EVENT', record);
  ctx.log.info({ id }, 'container removed');
}

/** Removes every host trace of a container and its record; safe to repeat. */
export async function undoContainer(ctx: ContainerContext, record: ContainerRecord): Promise<void> {
  const runtime = ctx.runtimes.find(record.runtimeHandler);
  const conmonPid = record.conmonPid || tryReadPidFile(conmonFiles.conmonPid(record.dir)) || 0;
  // conmon recorded the exit, so it has reaped the init process and its work is done; the runtime
  // only has its record and cgroups to drop, which touches nothing of the bundle's and goes
  // alongside the bundle's rename. Anything else is killed by the runtime first.
  const exited = readExit(record.dir) !== undefined;
  if (!exited && runtime) await runtime.delete(record.id, true);
  // Whatever is left of conmon is killed without waiting: it holds nothing
  // the steps below need gone (not the rootfs), and SIGKILL cannot be refused.
  if (conmonPid && isConmonOf(conmonPid, record.id)) killQuietly(conmonPid, 'SIGKILL');
  ctx.rootfs.unmount(join(record.dir, 'rootfs'));
  // Volumes bound under <dir>/mounts must be detached first: rm must never reach into a volume.
  releasePreparedMounts(ctx.native, record.dir);
  // A target's PID namespace pinned by a create that a crash interrupted.
  releaseTargetPin(ctx.native, targetPinPath(record.dir));
  // The bundle holds the container's writable layer, which may be any size: it is renamed out of
  // the way (one call; mounts below it move with it) and removed in the background, as containerd
  // removes a snapshot after the call. Reading the mount table (~2-4 ms on a full node) is left to
  // that background removal too. A crash meanwhile leaves a `.removed-` directory no record owns,
  // which the next start removes the same way.
  const doomed = join(ctx.dirs.containers, `${REMOVED_PREFIX}${record.id}-${randomBytes(4).toString('hex')}`);
  const renamed = fsp.rename(record.dir, doomed).then(
    () => void removeRenamedBundle(ctx, doomed),
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    },
  );
  const outcomes = await Promise.allSettled([
    exited && runtime ? runtime.deleteExited(record.id) : undefined,
    renamed,
    unlinkIfThere(conmonFiles.attachLink(ctx.dirs.sockets, record.id)),
    unlinkIfThere(conmonFiles.exitRecord(ctx.dirs.exits, record.id)),
  ]);
  // The record stays ('removing') for a retry of what failed.
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  // The holds go now (RemoveImage sees the layers free at once); collecting what no image needs
  // any more is not the removal's to wait for: a crash before it is made good by the next start's collection.
  const layers = ctx.layerHolds?.releaseLayers(record.id);
  void layers?.catch((err: unknown) => ctx.log.warn({ id: record.id, err: describeError(err) }, 'collecting layers a removed container held failed'));
  ctx.records.forget(record.id);
}

/** Names under containers/ of bundles renamed away by a removal (removeRenamedBundle, and the next start). */
export const REMOVED_PREFIX = '.removed-';

/**
 * Removes a bundle a removal renamed away. Whatever is still mounted in it is
 * detached first (a mount berth could not undo before the rename, or one made
 * there by someone else): the recursive removal then never reaches into what a
 * mount shows. Never throws; what cannot be removed is logged and left to the
 * next start.
 */
export async function removeRenamedBundle(ctx: Pick<ContainerContext, 'native' | 'log'>, dir: string): Promise<boolean> {
  try {
    for (let round = 0; ; round++) {
      const mounted = await mountPointsAtOrBelow(dir);
      if (mounted.length === 0) break;
      if (round === MAX_DETACH_ROUNDS) throw internal(`${mounted.join(', ')} still mounted after ${MAX_DETACH_ROUNDS} rounds of detaching`);
      ctx.log.warn({ dir, mounted }, 'a removed container\'s directory still has mounts in it; detaching them before removing it');
      // Deepest first; a stacked or already-detached mount is for the next round.
      for (const path of mounted.sort((a, b) => b.length - a.length)) {
        try {
          ctx.native.umount2(path, ctx.native.mountFlags.MNT_DETACH);
        } catch {
          // the next round sees what is left
        }
      }
    }
    // Retried: a conmon being killed may still be closing its files in the bundle.
    await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });
    return true;
  } catch (err) {
    ctx.log.warn({ dir, err: describeError(err) }, 'removing a removed container\'s directory failed; the next start tries again');
    return false;
  }
}

const MAX_DETACH_ROUNDS = 8;

/** unlink(2), for a file or link that may already be gone; a directory there is removed whole. */
async function unlinkIfThere(path: string): Promise<void> {
  try {
    await fsp.unlink(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EISDIR' && code !== 'EPERM') throw err;
    await fsp.rm(path, { recursive: true, force: true });
  }
}
