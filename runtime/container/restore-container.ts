// A container restored from a checkpoint archive, as CRI-O does it: a
// CreateContainer whose image is the archive's path, or an image made of one
// (checkpoint-image-reader.ts), stages the checkpoint
// (checkpoint-archive-reader.ts), creates the container from the image the
// checkpoint was taken of with the checkpoint's process (restored-config.ts),
// its writable layer rebuilt from rootfs-diff.tar and deleted.files, and
// keeps criu's images in the bundle. StartContainer then has conmon run
// `runtime restore --detach` instead of letting a created init exec: the
// restored processes resume from their memory, and conmon monitors them as
// any container's.
import { randomBytes } from 'node:crypto';
import { promises as fsp, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { nowUnixNanos } from '../common/clock';
import { stageCheckpointArchive, type StagedCheckpoint } from '../checkpoint/checkpoint-archive-reader';
import { CHECKPOINT_IMAGE_ANNOTATION, stageCheckpointImage } from '../checkpoint/checkpoint-image-reader';
import { runCheckpointJob } from '../checkpoint/checkpoint-jobs';
import { restoredContainerConfig } from '../checkpoint/restored-config';
import { describeError, failedPrecondition, internal } from '../errors';
import type { OciRuntime } from '../oci/oci-runtime';
import { criuLogExcerpt, workingCriu } from './checkpoint-container';
import type { ContainerContext } from './container-context';
import { logLocationOf, prepareLogFile, processHoldsFile } from './container-log-file';
import { type ContainerRecord } from './container-store';
import { releasePreparedMounts } from './prepared-mounts';

/** Where a restore's checkpoint comes from: an archive's path (no image reference starts with "/") or a checkpoint image. */
export type CheckpointSource = { archive: string } | { image: string; layersTopFirst: string[] };

/** The checkpoint a CreateContainer names as its image; undefined for an ordinary image. */
export function checkpointSourceOf(ctx: ContainerContext, config: ContainerConfig__Output): CheckpointSource | undefined {
  const image = config.image?.image ?? '';
  if (image.startsWith('/')) return { archive: image };
  const record = image ? ctx.images.resolve(image) : undefined;
  if (!record || !(CHECKPOINT_IMAGE_ANNOTATION in record.annotations)) return undefined;
  return { image, layersTopFirst: [...ctx.images.forContainer(image).layerDirs].reverse() };
}

/** Where archives are staged: under berth's root (beside the bundles, so criu's images move into one by rename). */
export function restoreStagingDir(ctx: Pick<ContainerContext, 'config'>): string {
  return join(ctx.config.root, 'checkpoint-staging');
}

/**
 * Stages the archive and hands `create` the container config to create (the
 * request's, made a restore's) with what was staged; the staging directory is
 * removed afterwards whatever happens (what the container keeps was moved out).
 */
export async function withStagedCheckpoint<T>(
  ctx: ContainerContext, config: ContainerConfig__Output, source: CheckpointSource, create: (restored: ContainerConfig__Output, staged: StagedCheckpoint) => Promise<T>,
): Promise<T> {
  workingCriu(ctx, 'CreateContainer from a checkpoint');
  const root = restoreStagingDir(ctx);
  await fsp.mkdir(root, { recursive: true, mode: 0o700 });
  const dir = join(root, randomBytes(8).toString('hex'));
  await fsp.mkdir(dir, { mode: 0o700 });
  try {
    const staged = 'archive' in source
      ? await stageCheckpointArchive(source.archive, dir)
      : await stageCheckpointImage(ctx.native, source.image, source.layersTopFirst, dir);
    const name = 'archive' in source ? source.archive : source.image;
    return await create(restoredContainerConfig(config, staged.container, staged.spec, name), staged);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true }).catch((err: unknown) => ctx.log.warn({ dir, err: describeError(err) }, 'removing a staged checkpoint failed'));
  }
}

/**
 * Staging directories a crash left behind, removed at start: moved aside at
 * once (one rename, before berthd serves), so a restore staged meanwhile is
 * not in what the background removal deletes.
 */
export function collectRestoreStaging(ctx: ContainerContext): void {
  const root = restoreStagingDir(ctx);
  const aside = `${root}.stale-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(root, aside);
  } catch {
    return; // none
  }
  void fsp.rm(aside, { recursive: true, force: true }).catch((err: unknown) => ctx.log.warn({ dir: aside, err: describeError(err) }, 'removing staged checkpoints failed'));
}

/** Unpacks the checkpoint's rootfs-diff.tar into the new container's (empty) upper dir, on a worker thread. */
export async function applyCheckpointDiff(ctx: ContainerContext, staged: StagedCheckpoint, upperDir: string): Promise<void> {
  if (!staged.rootfsDiff) return;
  await runCheckpointJob({ op: 'apply-diff', tarPath: staged.rootfsDiff, upperDir, maxBytes: ctx.config.image.max_layer_unpacked_bytes, maxEntries: ctx.config.image.max_image_entries });
}

/** Removes what the checkpointed container had deleted, through the mounted rootfs (overlayfs whites it out). */
export async function removeCheckpointDeletions(staged: StagedCheckpoint, rootfs: string): Promise<void> {
  if (staged.deleted.length === 0) return;
  await runCheckpointJob({ op: 'remove-deleted', rootfs, deleted: staged.deleted });
}

/** Moves criu's images into the bundle; their path there. */
export async function keepCheckpointImages(staged: StagedCheckpoint, bundle: string): Promise<string> {
  const target = join(bundle, 'checkpoint');
  await fsp.rename(staged.imagesDir, target);
  return target;
}

/**
 * StartContainer of a container created from a checkpoint: conmon runs
 * `runtime restore`; the record is left for start-container.ts to mark
 * running (or StartError, with criu's restore.log excerpt in the message).
 */
export async function restoreContainer(ctx: ContainerContext, record: ContainerRecord, runtime: OciRuntime): Promise<void> {
  const criu = workingCriu(ctx, 'StartContainer (restore)');
  const config = JSON.parse(record.configJson) as ContainerConfig__Output;
  const sandbox = ctx.sandboxes.get(record.podSandboxId);
  if (!sandbox) throw failedPrecondition(`pod sandbox ${record.podSandboxId} of container ${record.id} is gone`);
  const logFile = prepareLogFile(ctx.native, logLocationOf(sandbox.logDirectory || sandbox.config.log_directory || '', config.log_path, record.dir));
  const pending = ctx.conmon.prepare({
    id: record.id,
    bundleDir: record.dir,
    logPath: record.logPath,
    exitDir: ctx.dirs.exits,
    socketDir: ctx.dirs.sockets,
    runtime,
    terminal: config.tty,
    stdin: config.stdin,
    stdinOnce: config.stdin_once,
    restore: { imagesDir: record.restoreImages, runtimeArgs: runtime.criuArgs(criu.path) },
  });
  let created;
  try {
    created = await pending.run();
  } catch (err) {
    // conmon's --work-path is the bundle: criu's restore.log is there.
    const excerpt = await criuLogExcerpt(join(record.dir, 'restore.log'));
    throw failedPrecondition(`criu ${criu.version} could not restore container ${record.id}: ${describeError(err)}${excerpt ? `\ncriu's restore.log:\n${excerpt}` : ''}`);
  }
  record.pid = created.pid;
  record.conmonPid = created.conmonPid;
  if (!processHoldsFile(created.conmonPid, logFile)) {
    throw internal(`conmon did not open the log file berth made at ${record.logPath} (replaced while the container was restored?)`);
  }
  const images = record.restoreImages;
  record.restoreImages = '';
  record.startedAt = nowUnixNanos();
  try {
    releasePreparedMounts(ctx.native, record.dir);
  } catch (err) {
    ctx.log.warn({ id: record.id, err: describeError(err) }, 'prepared mounts left on the host until the container is removed');
  }
  // Restored: the images are spent (a large checkpoint's memory is worth freeing now, not at removal).
  void fsp.rm(images, { recursive: true, force: true }).catch((err: unknown) => ctx.log.warn({ id: record.id, err: describeError(err) }, 'removing spent checkpoint images failed'));
  ctx.log.info({ id: record.id, pid: created.pid, criu: criu.version }, 'container restored from its checkpoint');
}
