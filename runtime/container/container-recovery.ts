// At berthd's start: finish or undo what a crash interrupted, pick up exits
// that happened while berthd was down, kill conmons no record owns, then
// watch conmon's exit directory so exits are noticed as they happen.
import { promises as fsp, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeTreeUnlessMounted } from '../common/mount-table';
import { describeError } from '../errors';
import { conmonTarget, isConmonOf } from '../oci/conmon';
import { killQuietly } from '../oci/host-process';
import type { ContainerContext } from './container-context';
import { stateOf } from './container-view';
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
      if ((record.phase === 'running' || record.phase === 'created') && !isConmonOf(record.conmonPid, record.id)) {
        ctx.exits.markLost(record);
      }
      ctx.log.info({ id: record.id, state: stateOf(record), exitCode: record.exitCode }, 'container recovered');
    } catch (err) {
      ctx.log.error({ id: record.id, err: describeError(err) }, 'container recovery failed');
    }
  }
  killOrphanConmons(ctx);
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

/** conmons monitoring a bundle of ours that no record owns (a create interrupted before its record was saved). */
function killOrphanConmons(ctx: ContainerContext): void {
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return;
  }
  for (const p of pids) {
    const target = conmonTarget(Number(p));
    if (!target || dirname(target.bundle) !== ctx.dirs.containers) continue;
    if (ctx.records.exact(target.id)) continue;
    ctx.log.warn({ pid: Number(p), id: target.id }, 'killing a conmon no container record owns');
    killQuietly(Number(p), 'SIGKILL');
  }
}
