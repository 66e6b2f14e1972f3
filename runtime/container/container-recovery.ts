// At berthd's start: finish or undo what a crash interrupted, pick up exits
// that happened while berthd was down, kill conmons no record owns, then
// watch conmon's exit directory so exits are noticed as they happen.
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
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
