// StopContainer: the container's stop signal, SIGKILL to all its processes
// once the timeout passes (or at once with no timeout), and a wait for conmon
// to record the exit. How "all its processes" is reached depends on its PID
// namespace (killContainer). Stopping a container that is not running is done. A
// caller that gives up during the grace period ends the stop there, as
// containerd does: the container has had its signal, and the next
// StopContainer decides whether to kill it.
import { join } from 'node:path';
import { cancelled as cancelledError, describeError, internal } from '../errors';
import { readExit } from '../oci/conmon';
import type { OciRuntime } from '../oci/oci-runtime';
import { killCgroupProcesses } from './cgroup-kill';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import { specOf } from './container-view';
import { ownsPidNamespace } from './spec-namespaces';

/** How long a SIGKILLed container may take to be reported exited before stop fails. */
const KILL_GRACE_MS = 30_000;

/** Stops container `id` (a full id; the caller holds its lock). */
export async function stopContainer(ctx: ContainerContext, id: string, timeoutSeconds: number, cancelled?: AbortSignal): Promise<void> {
  const record = ctx.records.exact(id);
  if (!record) return;
  ctx.exits.refresh(record);
  if (record.phase !== 'running' && record.phase !== 'created') return;
  const runtime = ctx.runtimes.require(record.runtimeHandler);
  if (record.phase === 'running' && timeoutSeconds > 0) {
    await runtime.kill(id, record.stopSignal || 'SIGTERM');
    if (await ctx.exits.waitExit(record, timeoutSeconds * 1000, cancelled)) return releaseExited(ctx, record, runtime);
    if (cancelled?.aborted) {
      ctx.log.info({ id, signal: record.stopSignal }, 'StopContainer cancelled by its caller during the grace period; not killing');
      throw cancelledError(`StopContainer of ${id} was cancelled by its caller before the container stopped`);
    }
    ctx.log.info({ id, signal: record.stopSignal, timeoutSeconds }, 'container ignored its stop signal; killing it');
  }
  await killContainer(ctx, runtime, record);
  if (!(await ctx.exits.waitExit(record, KILL_GRACE_MS))) {
    throw internal(`container ${id} did not exit within ${KILL_GRACE_MS / 1000} s of SIGKILL`);
  }
  await releaseExited(ctx, record, runtime);
}

/**
 * What containerd's shim does when a container exits, done once it was stopped:
 * the runtime's state and cgroups go and the rootfs is unmounted (the writable
 * layer stays), so RemoveContainer has only the bundle and the record left.
 * Nothing here is needed again; a failure is left to RemoveContainer, which
 * does all of it again.
 */
async function releaseExited(ctx: ContainerContext, record: ContainerRecord, runtime: OciRuntime): Promise<void> {
  if (record.phase !== 'exited' || !readExit(record.dir)) return;
  try {
    await runtime.deleteExited(record.id);
    ctx.rootfs.unmount(join(record.dir, 'rootfs'));
  } catch (err) {
    ctx.log.debug({ id: record.id, err: describeError(err) }, 'releasing a stopped container\'s runtime state: left to its removal');
  }
}

/**
 * SIGKILL to every process of the container. In a PID namespace of its own, SIGKILL
 * to its init is enough: the kernel then kills the rest of the namespace, with no
 * process list to trust. In the pod's, a target's or the host's PID namespace its
 * init's death ends nothing else: the runtime's kill --all, then berth's own pass
 * over the container's cgroup (cgroup-kill.ts), since runc 1.1's --all can find
 * nothing there (under a nested systemd it reads an empty devices cgroup). The
 * runtime's failure counts only when berth's pass found nothing to kill either.
 */
export async function killContainer(ctx: Pick<ContainerContext, 'cgroupProcsFiles' | 'native' | 'log'>, runtime: OciRuntime, record: ContainerRecord): Promise<void> {
  if (ownsPidNamespace(specOf(record))) {
    await runtime.kill(record.id, 'SIGKILL');
    return;
  }
  let runtimeFailure: unknown;
  await runtime.kill(record.id, 'SIGKILL', true).catch((err: unknown) => (runtimeFailure = err));
  const killed = await killCgroupProcesses(ctx, record);
  if (runtimeFailure !== undefined && killed === 0) throw runtimeFailure;
}
