// RemoveContainer and the teardown it shares with a failed create and with
// recovery: kill what runs, then remove every host trace (runtime state,
// conmon, rootfs mount, bundle, conmon's links, layer holds) and the record.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { mountPointsAtOrBelow } from '../common/mount-table';
import { describeError, failedPrecondition } from '../errors';
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
  if (readExit(record.dir)) {
    // conmon recorded the exit, so it has reaped the init process and its
    // work is done; the runtime only has its record and cgroups to drop.
    if (runtime) await runtime.deleteExited(record.id);
  } else if (runtime) {
    await runtime.delete(record.id, true);
  }
  // Whatever is left of conmon is killed without waiting: it holds nothing
  // the steps below need gone (not the rootfs), and SIGKILL cannot be refused.
  if (conmonPid && isConmonOf(conmonPid, record.id)) killQuietly(conmonPid, 'SIGKILL');
  ctx.rootfs.unmount(join(record.dir, 'rootfs'));
  // Volumes bound under <dir>/mounts must be detached first: rm must never reach into a volume.
  releasePreparedMounts(ctx.native, record.dir);
  // A target's PID namespace pinned by a create that a crash interrupted.
  releaseTargetPin(ctx.native, targetPinPath(record.dir));
  // A removal crosses mount points: with anything still mounted in the bundle it would delete what that shows.
  const mounted = await mountPointsAtOrBelow(record.dir);
  if (mounted.length > 0) {
    throw failedPrecondition(`container ${record.id}: ${mounted.join(', ')} still mounted in its bundle; not removed (removal is retried)`);
  }
  // The bundle holds the container's writable layer, which may be any size: it is renamed out of
  // the way (one call) and removed in the background, as containerd removes a snapshot after the
  // call. A crash meanwhile leaves a directory no record owns, which the next start collects.
  const doomed = join(ctx.dirs.containers, `.removed-${record.id}-${randomBytes(4).toString('hex')}`);
  const renamed = await fsp.rename(record.dir, doomed).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  if (renamed) {
    // Retried: a conmon being killed may still be closing its files in the bundle.
    void fsp.rm(doomed, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 }).catch((err: unknown) => {
      ctx.log.warn({ id: record.id, dir: doomed, err: describeError(err) }, 'removing a removed container\'s directory failed; the next start collects it');
    });
  }
  await Promise.all([
    fsp.rm(conmonFiles.attachLink(ctx.dirs.sockets, record.id), { force: true, recursive: true }),
    fsp.rm(conmonFiles.exitRecord(ctx.dirs.exits, record.id), { force: true }),
  ]);
  await ctx.layerHolds?.releaseLayers(record.id);
  ctx.records.forget(record.id);
}
