// CreateContainer, in the order it happens: admit the request (validated, pod
// ready, name free, runtime able, image present), record the container before
// any host resource exists, then under its lock start conmon, mount the
// rootfs and write config.json while conmon starts up, and let conmon run
// `runtime create`. A failure at any step undoes every step before it.
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { nowUnixNanos } from '../common/clock';
import { alreadyExists, asBerthError, describeError, failedPrecondition, internal, notFound } from '../errors';
import type { ImageForContainer } from '../image/image-types';
import type { PendingConmon } from '../oci/conmon';
import type { OciRuntime } from '../oci/oci-runtime';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import type { ContainerContext } from './container-context';
import { checkContainerUserns } from './container-request-validation';
import type { ContainerRecord } from './container-store';
import { viewOf } from './container-view';
import { allowTraversal } from '../common/traversable';
import { buildSpec } from './oci-spec';
import { commandLine } from './process-spec';
import { prepareMounts, releasePreparedMounts, validateMountRequests } from './prepared-mounts';
import { checkPodPidNamespace, pinTargetPidNamespace, releaseTargetPin, targetPinPath, type PidNamespaceTarget } from './pid-namespace-join';
import { logFilePath, logLocationOf, prepareLogFile, processHoldsFile, type LogLocation } from './container-log-file';
import { undoContainer } from './remove-container';
import { readUserDatabase, type UserDatabase } from './user-lookup';
import type { StagedCheckpoint } from '../checkpoint/checkpoint-archive-reader';
import { applyCheckpointDiff, keepCheckpointImages, removeCheckpointDeletions } from './restore-container';

/** A create request that passed every check made before the host is touched. */
export interface AdmittedContainer {
  id: string;
  config: ContainerConfig__Output;
  sandbox: PodSandboxView;
  name: string;
  attempt: number;
  handler: string;
  runtime: OciRuntime;
  image: ImageForContainer;
  /** The bundle directory. */
  dir: string;
  /** Where the log file is made (container-log-file.ts), and its full path. */
  logLocation: LogLocation;
  logPath: string;
  /** The running container whose PID namespace pid mode TARGET joins, and where the create pins it. */
  target: PidNamespaceTarget | undefined;
  targetPidNsPath: string | undefined;
  /** A checkpoint archive staged for this container to be restored from (restore-container.ts); undefined for a plain create. */
  restore: StagedCheckpoint | undefined;
}

/** Admits a validated request into its pod (found and READY: the caller holds it, see Containers.create). */
export function admitContainer(ctx: ContainerContext, config: ContainerConfig__Output, sandbox: PodSandboxView, restore?: StagedCheckpoint): AdmittedContainer {
  if (sandbox.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
  if (restore && sandbox.userNamespace) throw failedPrecondition(`config.image.image: pod ${sandbox.id} has a user namespace (hostUsers: false), into which berth does not restore checkpoints yet`);
  checkContainerUserns(config, sandbox.userNamespace);
  validateMountRequests(config.mounts ?? [], ctx.host.mountFeatures, sandbox.userNamespace);
  (config.mounts ?? []).forEach((m, i) => {
    const ref = m.image?.image;
    if (ref && !ctx.images.resolve(ref)) throw notFound(`config.mounts[${i}].image: image "${ref}" is not present on this node; pull it first`);
  });
  const name = config.metadata?.name ?? '';
  const attempt = config.metadata?.attempt ?? 0;
  for (const other of ctx.records.ofPod(sandbox.id)) {
    if (other.name === name && other.attempt === attempt && other.phase !== 'removing') {
      throw alreadyExists(`container "${name}" attempt ${attempt} already exists in pod ${sandbox.id} as ${other.id}`);
    }
  }
  const handler = sandbox.runtimeHandler || ctx.config.oci.default_runtime;
  const runtime = ctx.runtimes.require(handler);
  refuseCrunOnHybridHost(ctx, handler, runtime);
  const logDirectory = sandbox.logDirectory || sandbox.config.log_directory || '';
  const image = ctx.images.forContainer(config.image?.image ?? '');
  // What runs must be known now: runc would only say `exec: "": executable file not found` at start.
  commandLine(config, image.image);
  const id = randomBytes(32).toString('hex');
  const dir = join(ctx.dirs.containers, id);
  const logLocation = logLocationOf(logDirectory, config.log_path, dir);
  const logPath = logFilePath(logLocation);
  const target = targetOf(ctx, config);
  return { id, config, sandbox, name, attempt, handler, runtime, image, dir, logLocation, logPath, target, targetPidNsPath: target ? targetPinPath(dir) : undefined, restore };
}

/** crun refuses hybrid hosts while the cgroup2 side has controllers enabled; say so before creating anything. */
function refuseCrunOnHybridHost(ctx: ContainerContext, handler: string, runtime: OciRuntime): void {
  const cg = ctx.host.cgroup;
  if (/crun$/.test(runtime.path) && cg.mode === 'hybrid' && cg.v2Controllers.length > 0) {
    throw failedPrecondition(
      `runtime handler "${handler}" (crun) cannot run on this hybrid cgroup host while controllers are enabled on the cgroup2 side (${cg.unifiedMount}: ${cg.v2Controllers.join(', ')}); use runc, or mount those controllers as cgroup v1`,
    );
  }
}

/** The running container pid mode TARGET names (its namespace is pinned and checked in makeContainer). */
function targetOf(ctx: ContainerContext, config: ContainerConfig__Output): PidNamespaceTarget | undefined {
  const nsOptions = config.linux?.security_context?.namespace_options;
  if (nsOptions?.pid !== 'TARGET') return undefined;
  const target = ctx.records.find(nsOptions.target_id);
  const view = target ? viewOf(ctx.exits.refresh(target), ctx.runtimes) : undefined;
  if (!target || !view || view.state !== 'CONTAINER_RUNNING' || !view.pid) {
    throw failedPrecondition(`config.linux.security_context.namespace_options.target_id: container "${nsOptions.target_id}" is not running`);
  }
  return { containerId: target.id, pid: view.pid, runtime: ctx.runtimes.require(target.runtimeHandler) };
}

/** The container's record, saved (phase creating) before the first host resource: a crash from here on is undone at the next start. */
export function recordContainer(ctx: ContainerContext, admitted: AdmittedContainer): ContainerRecord {
  const { id, config } = admitted;
  const record: ContainerRecord = {
    id,
    podSandboxId: admitted.sandbox.id,
    name: admitted.name,
    attempt: admitted.attempt,
    phase: 'creating',
    configJson: JSON.stringify(config),
    imageRef: config.image?.image ?? '',
    imageId: admitted.image.image.id,
    runtimeHandler: admitted.handler,
    dir: admitted.dir,
    logPath: admitted.logPath,
    createdAt: nowUnixNanos(),
    startedAt: '0',
    finishedAt: '0',
    exitCode: 0,
    reason: '',
    message: '',
    pid: 0,
    conmonPid: 0,
    specJson: '',
    stopSignal: 'SIGTERM',
    cgroupsPath: '',
    resourcesJson: JSON.stringify(config.linux?.resources ?? null),
    restoreImages: '',
  };
  ctx.records.add(record);
  return record;
}

/** Makes the recorded container on the host (under its lock); its id once created. */
export async function makeContainer(ctx: ContainerContext, admitted: AdmittedContainer, record: ContainerRecord): Promise<string> {
  const { id, logPath } = admitted;
  let pending: PendingConmon | undefined;
  let logCreatedHere = false;
  try {
    mkdirSync(join(admitted.dir, 'rootfs'), { recursive: true, mode: 0o700 });
    if (admitted.sandbox.userNamespace) allowTraversal([ctx.config.root, ctx.dirs.containers, admitted.dir]);
    // Made by berth, no link followed: conmon then opens (and must hold) this very file.
    const logFile = prepareLogFile(ctx.native, admitted.logLocation);
    logCreatedHere = logFile.created;
    // Started first: conmon's own start-up runs while the rootfs and config.json are made. A restore's starts at StartContainer.
    if (!admitted.restore) pending = startMonitor(ctx, admitted);
    const rootfs = await mountRootfs(ctx, admitted);
    // Image content, read on the thread pool before any namespace is pinned for runc.
    const users = await readUserDatabase(rootfs);
    const preparedSources = prepareMounts({
      containerId: id, dir: admitted.dir, mounts: admitted.config.mounts ?? [], userNamespace: admitted.sandbox.userNamespace,
      native: ctx.native, images: ctx.images, holds: ctx.layerHolds,
    });
    if (admitted.target && admitted.targetPidNsPath) pinTargetPidNamespace(ctx.native, admitted.target, admitted.targetPidNsPath);
    writeSpec(ctx, admitted, record, rootfs, preparedSources, users);
    // Right before runc joins it: the pod's PID namespace is still the one pinned, its holder still in it.
    if (joinsPodPidNamespace(admitted)) checkPodPidNamespace(ctx.native, admitted.sandbox);
    if (admitted.restore) {
      // Created, not yet restored: criu's images wait in the bundle, the prepared mounts stay for runc's restore.
      record.restoreImages = await keepCheckpointImages(admitted.restore, admitted.dir);
      record.phase = 'created';
      ctx.records.save(record);
      ctx.log.info({ id, pod: admitted.sandbox.id, name: admitted.name, archive: admitted.config.image?.user_specified_image }, 'container created from a checkpoint; restored at start');
      ctx.records.publish('CONTAINER_CREATED_EVENT', record);
      return id;
    }
    const starting = pending!;
    pending = undefined;
    const created = await starting.run().finally(() => {
      if (admitted.targetPidNsPath) releaseTargetPin(ctx.native, admitted.targetPidNsPath);
    });
    if (!processHoldsFile(created.conmonPid, logFile)) {
      throw internal(`conmon did not open the log file berth made at ${logPath} (replaced while the container was created?)`);
    }
    record.pid = created.pid;
    record.conmonPid = created.conmonPid;
    record.phase = 'created';
    ctx.records.save(record);
    dropPreparedMounts(ctx, admitted);
  } catch (err) {
    if (admitted.targetPidNsPath) releaseTargetPin(ctx.native, admitted.targetPidNsPath);
    // Awaited: a conmon still being spawned would open (and create) the log file after it was removed.
    await pending?.abandon();
    // A container never created has no log (nor leaves one behind).
    if (logCreatedHere) rmSync(logPath, { force: true });
    ctx.log.warn({ id, err: describeError(err) }, 'container create failed; undoing');
    await undoContainer(ctx, record).catch((undoErr) => ctx.log.error({ id, err: describeError(undoErr) }, 'undo of a failed create failed; retried at next start'));
    throw asBerthError(err, 'create container');
  }
  ctx.log.info({ id, pod: admitted.sandbox.id, name: admitted.name, handler: admitted.handler }, 'container created');
  ctx.records.publish('CONTAINER_CREATED_EVENT', record);
  return id;
}

function joinsPodPidNamespace(admitted: AdmittedContainer): boolean {
  return (admitted.config.linux?.security_context?.namespace_options?.pid ?? 'CONTAINER') === 'POD' && Boolean(admitted.sandbox.pidnsPath);
}

/**
 * runc has bound the prepared mounts into the container's own mount namespace:
 * berthd's copies go, so a volume's submount can be unmounted and its directory
 * removed on the host while the container runs (the kubelet does; critest does),
 * as with a runtime that makes these mounts itself.
 */
function dropPreparedMounts(ctx: ContainerContext, admitted: AdmittedContainer): void {
  try {
    releasePreparedMounts(ctx.native, admitted.dir);
  } catch (err) {
    ctx.log.warn({ id: admitted.id, err: describeError(err) }, 'prepared mounts left on the host until the container is removed');
  }
}

function startMonitor(ctx: ContainerContext, admitted: AdmittedContainer): PendingConmon {
  const { config } = admitted;
  return ctx.conmon.prepare({
    id: admitted.id,
    bundleDir: admitted.dir,
    logPath: admitted.logPath,
    exitDir: ctx.dirs.exits,
    socketDir: ctx.dirs.sockets,
    runtime: admitted.runtime,
    terminal: config.tty,
    stdin: config.stdin,
    stdinOnce: config.stdin_once,
  });
}

/**
 * Holds the image's layers and mounts overlay(layers + upper) at <bundle>/rootfs; the mount point.
 * A restore's upper dir starts as the checkpointed container's changes, and what it deleted is removed.
 */
async function mountRootfs(ctx: ContainerContext, admitted: AdmittedContainer): Promise<string> {
  const { dir, image, restore } = admitted;
  ctx.layerHolds?.holdLayers(admitted.id, image.image.id);
  for (const sub of ['upper', 'work']) mkdirSync(join(dir, sub), { mode: 0o700 });
  shapeUpperLikeImageRoot(join(dir, 'upper'), image.layerDirs);
  if (restore) await applyCheckpointDiff(ctx, restore, join(dir, 'upper'));
  const rootfs = join(dir, 'rootfs');
  const userns = admitted.sandbox.userNamespace;
  const idmap = userns ? { usernsPath: userns.path, uids: userns.uids, gids: userns.gids } : undefined;
  ctx.rootfs.mount({ layerDirs: image.layerDirs, upperDir: join(dir, 'upper'), workDir: join(dir, 'work'), target: rootfs, idmap });
  if (restore) await removeCheckpointDeletions(restore, rootfs);
  return rootfs;
}

/** Builds the OCI spec, writes config.json and notes in the record what later calls read from it. */
function writeSpec(
  ctx: ContainerContext, admitted: AdmittedContainer, record: ContainerRecord, rootfs: string, preparedSources: string[], users: UserDatabase,
): void {
  const built = buildSpec({
    id: admitted.id,
    config: admitted.config,
    sandbox: admitted.sandbox,
    image: admitted.image.image,
    rootfs,
    users,
    host: ctx.host,
    cgroupDriver: ctx.config.cgroup.driver,
    targetPidNsPath: admitted.targetPidNsPath,
    seccompDefaultProfilePath: ctx.config.container.seccomp_default_profile,
    allowedAnnotations: ctx.config.oci.runtimes[admitted.handler]?.allowed_annotations ?? [],
    preparedSources,
  });
  for (const warning of built.warnings) ctx.log.warn({ id: admitted.id, name: admitted.name }, warning);
  const specJson = JSON.stringify(built.spec);
  writeFileSync(join(admitted.dir, 'config.json'), specJson);
  record.specJson = specJson;
  record.stopSignal = built.stopSignal;
  record.cgroupsPath = built.spec.linux.cgroupsPath;
  // Saved with the created phase: undoing a crash from here needs only what the first save holds.
}

/**
 * The overlay's root directory takes the upper dir's owner and mode, so the
 * upper dir gets those of the image's root (0755 root:root when unknown): a
 * 0700 upper makes "/" untraversable for every non-root container user.
 */
function shapeUpperLikeImageRoot(upperDir: string, layerDirs: string[]): void {
  let mode = 0o755;
  let uid = 0;
  let gid = 0;
  const top = layerDirs[layerDirs.length - 1];
  if (top) {
    try {
      const st = statSync(top);
      mode = st.mode & 0o7777;
      uid = st.uid;
      gid = st.gid;
    } catch {
      // an image without layers: the defaults
    }
  }
  chownSync(upperDir, uid, gid);
  chmodSync(upperDir, mode);
}
