// The container model's front door: every container call comes here, is
// looked up (id or unique prefix), takes the container's lock when it changes
// the container, and is done by the file named after it (create-container.ts,
// restore-container.ts, start-container.ts, stop-container.ts,
// remove-container.ts, exec-sync.ts, checkpoint-container.ts,
// update-container-resources.ts, reopen-container-log.ts,
// container-recovery.ts). One lock per container id; nothing global around
// slow work.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import { loadNative } from '../../native';
import { IdLocks } from '../common/id-locks';
import { RetriableCreates } from '../common/retriable-creates';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { StagedCheckpoint } from '../checkpoint/checkpoint-archive-reader';
import { isBerthError, notFound } from '../errors';
import { checkCheckpointLocation, checkpointContainer } from './checkpoint-container';
import { checkpointSourceOf, collectRestoreStaging, withStagedCheckpoint } from './restore-container';
import { Conmon } from '../oci/conmon';
import type { OciRuntime } from '../oci/oci-runtime';
import { OciRuntimes } from '../oci/oci-runtimes';
import type { PodContainerHooks } from '../sandbox/sandbox-types';
import type { ContainerContext, ContainersOptions } from './container-context';
import { recoverContainers } from './container-recovery';
import { ContainerRecords } from './container-records';
import { checkContainerId, checkExecCommand, validateCreateContainer, validateResourcesUpdate, type CreateContainerRequest } from './container-request-validation';
import type { ContainerRecord } from './container-store';
import type { ContainerLookup, ContainerSessions, ContainerView, ExecTarget } from './container-types';
import { detailOf, listedOf, matchesFilter, viewOf, type ContainerDetail, type ContainerFilterOptions, type ListedContainer } from './container-view';
import { admitContainer, makeContainer, recordContainer } from './create-container';
import { execSync, execTarget, runningRecord, type ExecSyncResult } from './exec-sync';
import { ExitWatcher } from './exit-watcher';
import { removeContainer } from './remove-container';
import { reopenContainerLog } from './reopen-container-log';
import { startContainer } from './start-container';
import { stopContainer } from './stop-container';
import { updateContainerResources } from './update-container-resources';

export class Containers implements ContainerLookup, ContainerSessions, PodContainerHooks {
  private readonly ctx: ContainerContext;
  private readonly locks = new IdLocks();
  /** CreateContainer calls by pod, name and attempt (retries of a create whose answer reached nobody). */
  private readonly creates = new RetriableCreates();

  constructor(opts: ContainersOptions) {
    const { config, host, log } = opts;
    const dirs = { containers: join(config.root, 'containers'), exits: join(config.state, 'exits'), sockets: join(config.state, 'attach') };
    for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const records = new ContainerRecords(opts.store, opts.events, log);
    this.ctx = {
      config,
      host,
      log,
      sandboxes: opts.sandboxes,
      images: opts.images,
      rootfs: opts.rootfs,
      layerHolds: opts.layerHolds,
      cgroupRelativePath: opts.cgroupRelativePath,
      cgroupProcesses: opts.cgroupProcesses,
      cgroupProcsFiles: opts.cgroupProcsFiles,
      records,
      exits: new ExitWatcher(records, dirs.exits, log),
      runtimes: new OciRuntimes(config, host, opts.observeOciCall),
      conmon: new Conmon('path' in host.conmon ? host.conmon.path : config.oci.conmon),
      dirs,
      native: opts.native ?? loadNative(),
    };
    collectRestoreStaging(this.ctx);
  }

  // Lookups (the CRI's status and list calls, streaming, stats, events).

  get(idOrPrefix: string): ContainerView | undefined {
    if (!idOrPrefix) return undefined;
    const record = this.ctx.records.find(idOrPrefix);
    return record ? this.view(record) : undefined;
  }

  /** By id or unique prefix: INVALID_ARGUMENT when empty or ambiguous, NOT_FOUND when none. */
  require(idOrPrefix: string): ContainerView {
    return this.view(this.ctx.records.require(idOrPrefix));
  }

  requireRunning(idOrPrefix: string): ContainerView {
    return this.view(runningRecord(this.ctx, idOrPrefix));
  }

  list(): ContainerView[] {
    // While the exit directory is watched every exit is applied as it happens: no bundle is read per listed container.
    const current = this.ctx.exits.watching;
    return this.ctx.records
      .all()
      .filter((r) => r.phase !== 'creating' && r.phase !== 'removing')
      .map((r) => (current ? viewOf(r, this.ctx.runtimes, this.ctx.cgroupRelativePath) : this.view(r)));
  }

  /** How many containers a list shows, without making their views (a restart counts them before serving). */
  count(): number {
    let listed = 0;
    for (const record of this.ctx.records.all()) if (record.phase !== 'creating' && record.phase !== 'removing') listed++;
    return listed;
  }

  /** ListContainers: the containers matching `filter`, as a list shows them (listedOf). */
  listed(filter: ContainerFilterOptions): ListedContainer[] {
    const current = this.ctx.exits.watching;
    const out: ListedContainer[] = [];
    for (const record of this.ctx.records.all()) {
      if (record.phase === 'creating' || record.phase === 'removing') continue;
      const item = listedOf(current ? record : this.ctx.exits.refresh(record));
      if (matchesFilter(item, filter)) out.push(item);
    }
    return out;
  }

  filter(filter: ContainerFilterOptions): ContainerView[] {
    return this.list().filter((view) => matchesFilter(view, filter));
  }

  detail(idOrPrefix: string): ContainerDetail {
    const record = this.ctx.records.require(idOrPrefix);
    return detailOf(record, this.view(record));
  }

  /** The OCI runtime of a handler name. */
  runtime(handler: string): OciRuntime {
    return this.ctx.runtimes.require(handler);
  }

  execTarget(idOrPrefix: string, cmd: string[], tty: boolean): ExecTarget {
    return execTarget(this.ctx, idOrPrefix, cmd, tty);
  }

  // Lifecycle.

  /**
   * CreateContainer. A name (and attempt) in a pod is taken once a container
   * with it was delivered; a call while one with the same name is in flight
   * joins it, and one after a create whose answer reached nobody gets that
   * container (see RetriableCreates). `delivered` settles true once this
   * caller got its answer.
   */
  async create(request: CreateContainerRequest, delivered: Promise<boolean> = Promise.resolve(true)): Promise<string> {
    const config = validateCreateContainer(request, this.ctx.host);
    // The pod is held shared through the whole create: its stop or removal waits for the
    // container to exist (and then stops or removes it), and a create after them is refused.
    const makeFrom = (made: ContainerConfig__Output, restore?: StagedCheckpoint): Promise<string> =>
      this.ctx.sandboxes.whileReady(request.podSandboxId, (sandbox) => {
        const admitted = admitContainer(this.ctx, made, sandbox, restore);
        // In flight from here: the record holds the name and is undone by recovery, but no lookup finds it yet.
        const record = recordContainer(this.ctx, admitted);
        return this.locks.with(record.id, () => makeContainer(this.ctx, admitted, record));
      });
    // An image that is a checkpoint (an archive's path, or a checkpoint image): the container is made from it (restore-container.ts).
    const make = async (): Promise<string> => {
      const source = checkpointSourceOf(this.ctx, config);
      if (!source) return makeFrom(config);
      if (!this.ctx.sandboxes.get(request.podSandboxId)) throw notFound(`pod sandbox ${request.podSandboxId} not found`);
      return withStagedCheckpoint(this.ctx, config, source, (restored, staged) =>
        makeFrom(validateCreateContainer({ ...request, config: restored }, this.ctx.host), staged));
    };
    const pod = this.ctx.sandboxes.get(request.podSandboxId);
    if (!pod) return make();
    const exists = (id: string): boolean => {
      const phase = this.ctx.records.exact(id)?.phase;
      return phase !== undefined && phase !== 'creating' && phase !== 'removing';
    };
    const { name, attempt } = config.metadata!;
    return this.creates.run(JSON.stringify([pod.id, name, attempt]), make, exists, delivered);
  }

  /** CheckpointContainer: an archive of the running container at `location` (checkpoint-container.ts). */
  async checkpoint(idOrPrefix: string, location: string, timeoutSeconds: number): Promise<void> {
    checkContainerId(idOrPrefix);
    await checkCheckpointLocation(location);
    const { id } = this.ctx.records.require(idOrPrefix);
    await this.locks.with(id, () => checkpointContainer(this.ctx, id, location, timeoutSeconds));
  }

  async start(idOrPrefix: string): Promise<void> {
    const { id } = this.ctx.records.require(idOrPrefix);
    await this.locks.with(id, () => startContainer(this.ctx, id));
  }

  /**
   * NOT_FOUND when there is no such container (the shim answers success, as
   * the CRI wants). Once `cancelled` aborts, no SIGKILL follows the stop signal.
   */
  async stop(idOrPrefix: string, timeoutSeconds: number, cancelled?: AbortSignal): Promise<void> {
    const { id } = this.ctx.records.require(idOrPrefix);
    await this.locks.with(id, () => stopContainer(this.ctx, id, timeoutSeconds, cancelled));
  }

  /** Removing a container that is gone succeeds. */
  async remove(idOrPrefix: string): Promise<void> {
    const existing = this.ctx.records.find(idOrPrefix);
    if (!existing) return;
    await this.locks.with(existing.id, () => removeContainer(this.ctx, existing.id));
  }

  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output | null): Promise<void> {
    checkContainerId(idOrPrefix);
    const update = validateResourcesUpdate(resources, this.ctx.host);
    const { id } = this.ctx.records.require(idOrPrefix);
    await this.locks.with(id, () => updateContainerResources(this.ctx, id, update.resources, update.oci));
  }

  reopenLog(idOrPrefix: string): Promise<void> {
    return reopenContainerLog(this.ctx, idOrPrefix);
  }

  async execSync(idOrPrefix: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
    checkContainerId(idOrPrefix);
    checkExecCommand(cmd);
    return execSync(this.ctx, idOrPrefix, cmd, timeoutSeconds);
  }

  // The pod's hooks: its containers go before it does.

  async stopPodContainers(podSandboxId: string, timeoutSeconds: number): Promise<void> {
    await Promise.all(
      this.ctx.records.ofPod(podSandboxId).map((r) =>
        this.stop(r.id, timeoutSeconds).catch((err) => {
          if (!isBerthError(err, 'NotFound')) throw err;
        }),
      ),
    );
  }

  async removePodContainers(podSandboxId: string): Promise<void> {
    await Promise.all(this.ctx.records.ofPod(podSandboxId).map((r) => this.remove(r.id)));
  }

  // Start and shutdown of berthd.

  recover(): Promise<void> {
    return recoverContainers(this.ctx);
  }

  close(): void {
    this.ctx.exits.close();
  }

  private view(record: ContainerRecord): ContainerView {
    return viewOf(this.ctx.exits.refresh(record), this.ctx.runtimes, this.ctx.cgroupRelativePath);
  }
}
