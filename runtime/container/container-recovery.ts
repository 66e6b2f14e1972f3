// At berthd's start: finish or undo what a crash interrupted, pick up exits
// that happened while berthd was down, kill conmons no record owns, then
// watch conmon's exit directory so exits are noticed as they happen. What
// conmon left for every live container (its exit file, its /proc entries) is
// read in one batch on a pool thread, and the few containers that need more
// (an exit to record, a checkpoint to undo) are handled a bounded number at a
// time: nothing per container is read synchronously on the event loop, so a
// node with a hundred containers is ready again in a few milliseconds.
import { existsSync, promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeTreeUnlessMounted } from '../common/mount-table';
import { describeError } from '../errors';
import { conmonFiles, conmonTargetOf, isConmonOfProc, readExitAsync } from '../oci/conmon';
import { killQuietly } from '../oci/host-process';
import type { ContainerContext } from './container-context';
import { awaitsRestore, type ContainerRecord } from './container-store';
import { stateOf } from './container-view';
import { releaseTargetPin, targetPinPath } from './pid-namespace-join';
import { releasePreparedMounts } from './prepared-mounts';
import { REMOVED_PREFIX, removeRenamedBundle, undoContainer } from './remove-container';

/** Containers handled at once when one needs more than the batch read (an exit to record, a checkpoint to undo). */
const RECOVERY_CONCURRENCY = 16;
/** conmon's and /proc's small files: an exit code, a stat line, an argv. */
const PROC_FILE_MAX_BYTES = 64 * 1024;
/** Where an interrupted checkpoint works (checkpoint-container.ts, loaded only when one is found). */
const CHECKPOINT_WORK_DIR = 'checkpoint-work';

/** Runs `work` on every item, at most `limit` at a time. */
async function eachBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

interface LiveFacts {
  exited: boolean;
  conmonAlive: boolean;
}

/** Each live record's exit file and its conmon's /proc entries, read in one batch off the event loop. */
async function readLiveFacts(ctx: ContainerContext, live: readonly ContainerRecord[]): Promise<LiveFacts[]> {
  const paths = live.flatMap((r) => [conmonFiles.exit(r.dir), `/proc/${r.conmonPid}/cmdline`, `/proc/${r.conmonPid}/stat`]);
  const texts = paths.length > 0 ? await ctx.native.readSmallFiles(paths, PROC_FILE_MAX_BYTES) : [];
  return live.map((r, i) => {
    const [exit, cmdline, stat] = texts.slice(3 * i, 3 * i + 3);
    return { exited: exit !== null, conmonAlive: r.conmonPid > 0 && isConmonOfProc(cmdline, stat, r.id) };
  });
}

async function recoverLive(ctx: ContainerContext, record: ContainerRecord, facts: LiveFacts): Promise<void> {
  if (facts.exited) {
    const exit = await readExitAsync(record.dir);
    if (exit) ctx.exits.apply(record, exit);
  }
  if (record.phase === 'running' && (await fsp.stat(join(record.dir, CHECKPOINT_WORK_DIR)).then(() => true, () => false))) {
    const { finishInterruptedCheckpoint } = await import('./checkpoint-container');
    await finishInterruptedCheckpoint(ctx, record);
  }
  // A container created from a checkpoint has no monitor until StartContainer restores it.
  if ((record.phase === 'running' || record.phase === 'created') && !awaitsRestore(record) && !facts.conmonAlive) {
    ctx.exits.markLost(record);
  }
  ctx.log.debug({ id: record.id, state: stateOf(record), exitCode: record.exitCode }, 'container recovered');
}

export async function recoverContainers(ctx: ContainerContext): Promise<void> {
  const records = ctx.records.all();
  for (const record of records) {
    if (record.phase !== 'creating' && record.phase !== 'removing') continue;
    try {
      ctx.log.info({ id: record.id, phase: record.phase }, 'finishing an interrupted container create/remove');
      await undoContainer(ctx, record);
      if (record.phase === 'removing') ctx.records.publish('CONTAINER_DELETED_EVENT', record);
    } catch (err) {
      ctx.log.error({ id: record.id, err: describeError(err) }, 'container recovery failed');
    }
  }
  const live = records.filter((r) => r.phase === 'running' || r.phase === 'created');
  const facts = await readLiveFacts(ctx, live);
  // The batch says which containers need more than it read: only those are visited again.
  const visits = live.map((record, i) => ({ record, facts: facts[i] }));
  await eachBounded(visits, RECOVERY_CONCURRENCY, async ({ record, facts: seen }) => {
    try {
      await recoverLive(ctx, record, seen);
    } catch (err) {
      ctx.log.error({ id: record.id, err: describeError(err) }, 'container recovery failed');
    }
  });
  const states = { running: 0, created: 0, exited: 0 };
  for (const record of ctx.records.all()) if (record.phase in states) states[record.phase as keyof typeof states]++;
  ctx.log.info(states, `containers recovered: ${states.running} running, ${states.created} created, ${states.exited} exited`);
  await removeOrphanContainers(ctx, await killOrphanConmons(ctx));
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
    // A removal's bundle, renamed away before its answer: removed as the removal would have.
    if (name.startsWith(REMOVED_PREFIX)) {
      if (await removeRenamedBundle(ctx, join(ctx.dirs.containers, name))) removed.push(name);
      continue;
    }
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
async function killOrphanConmons(ctx: ContainerContext): Promise<string[]> {
  let pids: string[] = [];
  try {
    pids = (await fsp.readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  // Every process's argv in one batch: a node runs hundreds (a conmon and a container per pod).
  const argvs = await ctx.native.readSmallFiles(pids.map((p) => `/proc/${p}/cmdline`), PROC_FILE_MAX_BYTES);
  const ids: string[] = [];
  pids.forEach((p, i) => {
    const text = argvs[i];
    const target = text === null ? undefined : conmonTargetOf(text.split('\0'));
    if (!target || dirname(target.bundle) !== ctx.dirs.containers) return;
    if (ctx.records.exact(target.id)) return;
    ctx.log.warn({ pid: Number(p), id: target.id }, 'killing a conmon no container record owns');
    killQuietly(Number(p), 'SIGKILL');
    ids.push(target.id);
  });
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
