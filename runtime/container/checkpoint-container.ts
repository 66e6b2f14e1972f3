// CheckpointContainer: a running container's processes checkpointed by criu
// through the OCI runtime (`checkpoint --leave-running`), and an archive
// written at the caller's location in the layout checkpointctl and CRI-O use
// (runtime/checkpoint/checkpoint-layout.ts). The container is frozen from
// before criu's dump until its writable layer is in the archive, so the
// files match the memory, then thawed: it keeps running. criu's work and
// images live in the container's bundle and are removed afterwards. The
// archive is written to a new file beside `location` (O_EXCL|O_NOFOLLOW) on a
// worker thread and renamed onto it: a link at `location` is replaced, never
// followed.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { nowUnixNanos } from '../common/clock';
import { ARCHIVE, rfc3339Nanos, type CheckpointedContainer } from '../checkpoint/checkpoint-layout';
import { runCheckpointJob } from '../checkpoint/checkpoint-jobs';
import { criuErrorExcerpt } from '../host/checkpoint-support';
import { deadlineExceeded, describeError, failedPrecondition, invalidArgument, isBerthError } from '../errors';
import { runtimeMessage } from '../oci/oci-runtime';
import type { ContainerContext } from './container-context';
import type { ContainerRecord } from './container-store';
import { stateOf } from './container-view';
import type { OciSpec } from './oci-spec-types';

/** A CheckpointContainer that gives no timeout gets this long (the CRI leaves the default to the runtime). */
export const DEFAULT_CHECKPOINT_TIMEOUT_SECONDS = 300;
const PATH_MAX = 4096;
/** How much of criu's log is read for an error's excerpt (its tail holds the errors). */
const LOG_TAIL_BYTES = 256 * 1024;

const ARCHIVE_TEMP_NOTE = 'archive-in-progress';

/** Where a checkpoint works (criu's images and log, the dumps): in the container's bundle, removed when done. */
export function checkpointWorkDir(bundle: string): string {
  return join(bundle, 'checkpoint-work');
}

/**
 * At start: a checkpoint that berthd's death interrupted left its container
 * frozen, a half-written archive and its work directory. The container is
 * thawed (it was running; a container not frozen is left as it is) and both
 * are removed.
 */
export async function finishInterruptedCheckpoint(ctx: ContainerContext, record: ContainerRecord): Promise<void> {
  const work = checkpointWorkDir(record.dir);
  const temp = await fsp.readFile(join(work, ARCHIVE_TEMP_NOTE), 'utf8').catch(() => undefined);
  if (temp === undefined && !(await fsp.stat(work).catch(() => undefined))) return;
  const runtime = ctx.runtimes.find(record.runtimeHandler);
  if (runtime && (await runtime.state(record.id).catch(() => undefined))?.status === 'paused') await runtime.resume(record.id);
  if (temp) await fsp.rm(temp, { force: true });
  await fsp.rm(work, { recursive: true, force: true });
  ctx.log.warn({ id: record.id }, 'a checkpoint interrupted by berthd\'s end was undone (container thawed, partial archive removed)');
}

/** INVALID_ARGUMENT naming `location` unless it is an absolute path in an existing directory, and not a directory itself. */
export async function checkCheckpointLocation(location: string): Promise<void> {
  if (!location) throw invalidArgument('location: is empty');
  if (location.includes('\0')) throw invalidArgument('location: has a NUL byte');
  if (!location.startsWith('/')) throw invalidArgument(`location: "${location}" must be an absolute path`);
  if (location.endsWith('/') || basename(location) === '..' || basename(location) === '.') throw invalidArgument(`location: "${location}" names no file`);
  if (Buffer.byteLength(location) >= PATH_MAX) throw invalidArgument(`location: longer than ${PATH_MAX - 1} bytes`);
  const parent = await fsp.stat(dirname(location)).catch(() => undefined);
  if (!parent?.isDirectory()) throw invalidArgument(`location: directory ${dirname(location)} does not exist`);
  const existing = await fsp.lstat(location).catch(() => undefined);
  if (existing?.isDirectory()) throw invalidArgument(`location: "${location}" is a directory`);
}

/** The last part of a criu log, reduced to its errors ("" when there is none). */
export async function criuLogExcerpt(path: string): Promise<string> {
  let handle;
  try {
    handle = await fsp.open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return criuErrorExcerpt(buffer.toString('utf8'));
  } finally {
    await handle.close();
  }
}

function configDump(record: ContainerRecord): CheckpointedContainer {
  const config = JSON.parse(record.configJson) as { image?: { user_specified_image?: string } };
  // A container made from a checkpoint archive names the archive (a path) as its user-specified image.
  const restored = (config.image?.user_specified_image ?? '').startsWith('/');
  return {
    id: record.id,
    name: record.name,
    rootfsImage: record.imageRef,
    rootfsImageRef: record.imageId,
    rootfsImageName: record.imageRef,
    runtime: record.runtimeHandler,
    createdTime: rfc3339Nanos(record.createdAt),
    checkpointedTime: rfc3339Nanos(nowUnixNanos()),
    restoredTime: rfc3339Nanos(restored ? record.startedAt : '0'),
    restored,
  };
}

/** Checkpoints container `id` (a full id; the caller holds its lock) into an archive at `location`. */
export async function checkpointContainer(ctx: ContainerContext, id: string, location: string, timeoutSeconds: number): Promise<void> {
  const criu = workingCriu(ctx, 'CheckpointContainer');
  const record = ctx.exits.refresh(ctx.records.require(id));
  if (record.phase !== 'running') throw failedPrecondition(`CheckpointContainer: container ${id} is ${stateOf(record)}, not running`);
  if (ctx.sandboxes.get(record.podSandboxId)?.userNamespace) {
    throw failedPrecondition(`CheckpointContainer: container ${id} runs in its pod's user namespace (hostUsers: false), which berth does not checkpoint yet`);
  }
  const seconds = timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_CHECKPOINT_TIMEOUT_SECONDS;
  const deadline = Date.now() + seconds * 1000;
  const runtime = ctx.runtimes.require(record.runtimeHandler);
  const spec = JSON.parse(record.specJson) as OciSpec;
  const work = checkpointWorkDir(record.dir);
  const imagesDir = join(work, 'images');
  const criuWork = join(work, 'criu');
  const archiveTemp = join(dirname(location), `.${basename(location)}.berth-${randomBytes(6).toString('hex')}`);
  await fsp.rm(work, { recursive: true, force: true });
  await fsp.mkdir(imagesDir, { recursive: true, mode: 0o700 });
  await fsp.mkdir(criuWork, { mode: 0o700 });
  // For recovery, should berthd die before the end: the container to thaw and this file to remove.
  await fsp.writeFile(join(work, ARCHIVE_TEMP_NOTE), archiveTemp, { mode: 0o600 });
  let paused = false;
  try {
    await fsp.writeFile(join(work, ARCHIVE.specDump), record.specJson, { mode: 0o600 });
    await fsp.writeFile(join(work, ARCHIVE.configDump), JSON.stringify(configDump(record)), { mode: 0o600 });
    // Frozen through the dump and the copy of its writable layer: the archive's files are the memory's.
    await runtime.pause(id);
    paused = true;
    const dumped = await runtime.checkpoint(id, { imagesDir, workDir: criuWork, criuPath: criu.path, timeoutMs: Math.max(1, deadline - Date.now()) });
    if (dumped.code !== 0) {
      if (Date.now() >= deadline) throw deadlineExceeded(`CheckpointContainer: criu did not checkpoint container ${id} within ${seconds} s`);
      const excerpt = await criuLogExcerpt(join(criuWork, 'dump.log'));
      throw failedPrecondition(
        `CheckpointContainer: criu ${criu.version} could not checkpoint container ${id}: ${runtimeMessage(dumped.stderr) || `exit status ${dumped.code}`}${excerpt ? `\ncriu's dump.log:\n${excerpt}` : ''}`,
      );
    }
    const layers = imageLayersTopFirst(ctx, record);
    const written = await runCheckpointJob({
      op: 'export',
      job: {
        workDir: work, imagesDir, dumpLog: join(criuWork, 'dump.log'), archivePath: archiveTemp,
        diff: { upperDir: join(record.dir, 'upper'), lowerDirsTopFirst: layers, mountPoints: spec.mounts.map((m) => m.destination) },
      },
    }, deadline).catch((err: unknown) => {
      throw isBerthError(err, 'DeadlineExceeded') ? deadlineExceeded(`CheckpointContainer: the archive of container ${id} was not written within ${seconds} s`) : err;
    });
    await fsp.rename(archiveTemp, location);
    ctx.log.info({ id, location, ...written, criu: criu.version }, 'container checkpointed');
  } catch (err) {
    await fsp.rm(archiveTemp, { force: true }).catch(() => undefined);
    throw err;
  } finally {
    if (paused) await runtime.resume(id).catch((err: unknown) => ctx.log.error({ id, err: describeError(err) }, 'thawing a container after its checkpoint failed'));
    await fsp.rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The criu berth found working at start; FAILED_PRECONDITION saying why not in criu's words. */
export function workingCriu(ctx: Pick<ContainerContext, 'host'>, call: string): { path: string; version: string } {
  const criu = ctx.host.checkpoint.criu;
  if (!criu.supported) throw failedPrecondition(`${call}: checkpointing is not available on this host: ${criu.reason}`);
  return { path: criu.path ?? 'criu', version: criu.version ?? 'unknown' };
}

/** The image's layer directories, top-most first: what an opaque directory of the writable layer hides. */
function imageLayersTopFirst(ctx: ContainerContext, record: ContainerRecord): string[] {
  try {
    return [...ctx.images.forContainer(record.imageId).layerDirs].reverse();
  } catch {
    // The image is gone (its layers are held for the container, its record is not): deletions under an opaque directory go unlisted.
    return [];
  }
}
