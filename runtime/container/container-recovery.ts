// At berthd's start: finish or undo what a crash interrupted, pick up exits
// that happened while berthd was down, kill conmons no record owns, then
// watch conmon's exit directory so exits are noticed as they happen.
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeTreeUnlessMounted } from '../common/mount-table';
import { describeError } from '../errors';
import { conmonTarget, isConmonOf } from '../oci/conmon';
import { killQuietly } from '../oci/host-process';
import type { ContainerContext } from './container-context';
import { finishInterruptedCheckpoint } from './checkpoint-container';
import { awaitsRestore } from './container-store';
import { stateOf } from './container-view';
import { releaseTargetPin, targetPinPath } from './pid-namespace-join';
import { releasePreparedMounts } from './prepared-mounts';
import { undoContainer } from './remove-container';

export async function recoverContainers(ctx: ContainerContext): Promise<void> {
  for (const record of ctx.records.all()) {
    try {
      if (record.phase === 'creating' || record.phase === 'removing') {
        ctx.log.info({ id: record.id, phase: record.phase }, 'finishing an interrupted container create/remove');
        await undoContainer(ctx, record);
        if (record.phase === 'removing') ctx.records.publish('CONTAINER_DELETED_EVENT', record);
        continue;
      }
      ctx.exits.refresh(record);
      if (record.phase === 'running') await finishInterruptedCheckpoint(ctx, record);
      // A container created from a checkpoint has no monitor until StartContainer restores it.
      if ((record.phase === 'running' || record.phase === 'created') && !awaitsRestore(record) && !isConmonOf(record.conmonPid, record.id)) {
        ctx.exits.markLost(record);
      }
      ctx.log.info({ id: record.id, state: stateOf(record), exitCode: record.exitCode }, 'container recovered');
    } catch (err) {
      ctx.log.error({ id: record.id, err: describeError(err) }, 'container recovery failed');
    }
  }
  await removeOrphanContainers(ctx, killOrphanConmons(ctx));
  ctx.exits.watch();
  // In the background: a large writable layer takes a while to remove, and nothing waits on it.
  void collectStrayBundles(ctx).catch((err: unknown) => ctx.log.warn({ err: describeError(err) }, 'collecting container directories no record owns failed'));
}

/**
 * Bundles under containers/ that no record owns: a crash between a bundle's creation and its
 * record, or between a removal's record and its directory. A directory with anything mounted on
 * or below it (a rootfs still mounted) is never removed: a recursive removal would reach into the
 * mount. A bundle whose create starts meanwhile has its record first, so it is not taken.
 */
export async function collectStrayBundles(ctx: ContainerContext): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(ctx.dirs.containers);
  } catch {
    return;
  }
  const removed: string[] = [];
  const kept: string[] = [];
  for (const name of names) {
    if (ctx.records.exact(name)) continue;
    const mounted = await removeTreeUnlessMounted(join(ctx.dirs.containers, name));
    if (mounted.length === 0) {
      removed.push(name);
    } else {
      kept.push(name);
      ctx.log.warn({ dir: join(ctx.dirs.containers, name), mounted }, 'a container directory no container owns has something mounted in it; left in place');
    }
  }
  if (removed.length > 0 || kept.length > 0) ctx.log.info({ removed, keptMounted: kept }, 'collected container directories no container owns');
}

/** Kills conmons monitoring a bundle of ours that no record owns (a record lost while its monitor ran); their container ids. */
function killOrphanConmons(ctx: ContainerContext): string[] {
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  const ids: string[] = [];
  for (const p of pids) {
    const target = conmonTarget(Number(p));
    if (!target || dirname(target.bundle) !== ctx.dirs.containers) continue;
    if (ctx.records.exact(target.id)) continue;
    ctx.log.warn({ pid: Number(p), id: target.id }, 'killing a conmon no container record owns');
    killQuietly(Number(p), 'SIGKILL');
    ids.push(target.id);
  }
  return ids;
}

/**
 * What an orphaned conmon monitored goes too: the runtime's container (its
 * processes, cgroups and state: `runtime delete --force` for each runtime that
 * knows the id) and the bundle's mounts, so the bundle itself is collected
 * with the other stray bundles.
 */
async function removeOrphanContainers(ctx: ContainerContext, ids: string[]): Promise<void> {
  for (const id of ids) {
    try {
      for (const runtime of ctx.runtimes.all()) {
        if (existsSync(join(runtime.root, id))) await runtime.delete(id, true);
      }
      const bundle = join(ctx.dirs.containers, id);
      ctx.rootfs.unmount(join(bundle, 'rootfs'));
      releasePreparedMounts(ctx.native, bundle);
      releaseTargetPin(ctx.native, targetPinPath(bundle));
      ctx.log.info({ id }, 'removed the container of an orphaned conmon');
    } catch (err) {
      ctx.log.error({ id, err: describeError(err) }, 'removing the container of an orphaned conmon failed');
    }
  }
}
