// StartContainer: lets a created container's init process exec its command,
// or restores a container created from a checkpoint (restore-container.ts).
// A start that fails leaves the container exited with StartError, as the
// kubelet expects, and kills whatever of it is left.
import { nowUnixNanos } from '../common/clock';
import { describeError, failedPrecondition } from '../errors';
import type { ContainerContext } from './container-context';
import { stateOf } from './container-view';
import { awaitsRestore } from './container-store';
import { restoreContainer } from './restore-container';
import { killContainer } from './stop-container';

/** Starts container `id` (a full id; the caller holds its lock). */
export async function startContainer(ctx: ContainerContext, id: string): Promise<void> {
  const record = ctx.exits.refresh(ctx.records.require(id));
  if (record.phase !== 'created') throw failedPrecondition(`container ${id} is ${stateOf(record)}, not created`);
  const runtime = ctx.runtimes.require(record.runtimeHandler);
  await ctx.exits.holdExitWhile(id, async () => {
    const exit = ctx.exits.exitWatch(record);
    try {
      if (awaitsRestore(record)) await restoreContainer(ctx, record, runtime);
      else await runtime.start(id, exit.exited);
    } catch (err) {
      record.phase = 'exited';
      record.finishedAt = nowUnixNanos();
      record.exitCode = 128;
      record.reason = 'StartError';
      record.message = describeError(err);
      ctx.records.save(record);
      await killContainer(ctx, runtime, record).catch(() => undefined);
      throw err;
    } finally {
      exit.cancel();
    }
    record.phase = 'running';
    record.startedAt = nowUnixNanos();
    ctx.records.save(record);
    ctx.records.publish('CONTAINER_STARTED_EVENT', record);
  });
  // A container that exited at once is reported exited now.
  ctx.exits.refresh(record);
}
