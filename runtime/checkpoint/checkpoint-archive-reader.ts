// Reads a checkpoint archive a CreateContainer names as its image: criu's
// images and rootfs-diff.tar are staged into a directory of berth's, the small
// metadata files (config.dump, spec.dump, deleted.files) read into memory.
// The archive is content like an image layer: every name is checked (no "..",
// nothing absolute), only directories and regular files are taken, files are
// made with O_EXCL|O_NOFOLLOW, metadata reads are capped. Async file system
// calls only: this runs on the event loop while berthd serves.
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { invalidArgument, notFound } from '../errors';
import { TarReader } from '../image/tar-reader';
import { ARCHIVE, CRIU_INVENTORY, type CheckpointedContainer } from './checkpoint-layout';
import type { CheckpointedSpec } from './restored-config';

/** config.dump, spec.dump and deleted.files are read whole: larger is no checkpoint's. */
export const MAX_METADATA_BYTES = 16 * 1024 * 1024;
const MAX_ENTRIES = 100_000;

export interface StagedCheckpoint {
  /** The staging directory (removed by the caller). */
  dir: string;
  /** criu's images, for `runc restore --image-path`. */
  imagesDir: string;
  /** The staged rootfs-diff.tar; undefined when the archive has none (no change was made). */
  rootfsDiff: string | undefined;
  deleted: string[];
  container: CheckpointedContainer;
  spec: CheckpointedSpec;
}

function archiveName(raw: string): string {
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (raw.startsWith('/') || parts.includes('..') || raw.includes('\0')) throw invalidArgument(`checkpoint archive: entry "${raw}" leaves the archive`);
  return parts.join('/');
}

const isRegular = (typeflag: string): boolean => typeflag === '0' || typeflag === '\0' || typeflag === '7' || typeflag === '';

/** Stages the archive at `archivePath` into `dir` (an existing, empty directory). */
export async function stageCheckpointArchive(archivePath: string, dir: string): Promise<StagedCheckpoint> {
  const what = `checkpoint archive ${archivePath}`;
  let handle;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang the open.
    handle = await fsp.open(archivePath, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw notFound(`config.image.image: ${what} does not exist`);
    throw invalidArgument(`config.image.image: ${what} cannot be opened: ${(err as Error).message}`);
  }
  const metadata = new Map<string, Buffer>();
  let rootfsDiff: string | undefined;
  try {
    if (!(await handle.stat()).isFile()) throw invalidArgument(`config.image.image: ${what} is not a regular file`);
    const reader = new TarReader(createReadStream('', { fd: handle.fd, autoClose: false, highWaterMark: 1024 * 1024 }));
    let entries = 0;
    for (let entry = await reader.next(); entry; entry = await reader.next()) {
      if (++entries > MAX_ENTRIES) throw invalidArgument(`${what}: more than ${MAX_ENTRIES} entries`);
      const name = archiveName(entry.name);
      const inImages = name === ARCHIVE.images || name.startsWith(`${ARCHIVE.images}/`);
      if (inImages && entry.typeflag === '5') {
        await fsp.mkdir(join(dir, name), { recursive: true, mode: 0o700 });
        continue;
      }
      const wanted = inImages || name === ARCHIVE.rootfsDiff || name === ARCHIVE.configDump || name === ARCHIVE.specDump || name === ARCHIVE.deletedFiles;
      if (!wanted) continue;
      if (!isRegular(entry.typeflag)) throw invalidArgument(`${what}: "${entry.name}" is not a regular file`);
      if (inImages || name === ARCHIVE.rootfsDiff) {
        const path = join(dir, name);
        await fsp.mkdir(dirname(path), { recursive: true, mode: 0o700 });
        const file = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch((err: NodeJS.ErrnoException) => {
          throw err.code === 'EEXIST' || err.code === 'ELOOP' ? invalidArgument(`${what}: "${entry!.name}" appears twice`) : err;
        });
        try {
          for await (const piece of reader.data(entry)) await file.write(piece);
        } finally {
          await file.close();
        }
        if (name === ARCHIVE.rootfsDiff) rootfsDiff = path;
        continue;
      }
      if (entry.size > MAX_METADATA_BYTES) throw invalidArgument(`${what}: ${name} is larger than ${MAX_METADATA_BYTES} bytes`);
      const pieces: Buffer[] = [];
      for await (const piece of reader.data(entry)) pieces.push(piece);
      metadata.set(name, Buffer.concat(pieces));
    }
  } finally {
    await handle.close();
  }
  return checkpointStaged(dir, metadata, rootfsDiff, what);
}

/**
 * What was staged, checked: criu's images are there (inventory.img), the
 * metadata parses. `metadata` holds config.dump, spec.dump and deleted.files
 * as read; `what` names the source in messages.
 */
export async function checkpointStaged(dir: string, metadata: Map<string, Buffer>, rootfsDiff: string | undefined, what: string): Promise<StagedCheckpoint> {
  const imagesDir = join(dir, ARCHIVE.images);
  try {
    await fsp.access(join(imagesDir, CRIU_INVENTORY));
  } catch {
    throw invalidArgument(`config.image.image: ${what} holds no criu images (no ${ARCHIVE.images}/${CRIU_INVENTORY}): not a container checkpoint`);
  }
  const container = parseJson<CheckpointedContainer>(metadata, ARCHIVE.configDump, what);
  const spec = parseJson<CheckpointedSpec>(metadata, ARCHIVE.specDump, what);
  const deleted = metadata.has(ARCHIVE.deletedFiles) ? parseJson<unknown>(metadata, ARCHIVE.deletedFiles, what) : [];
  if (!Array.isArray(deleted) || deleted.some((d) => typeof d !== 'string')) throw invalidArgument(`${what}: ${ARCHIVE.deletedFiles} is not a JSON array of paths`);
  if (typeof container !== 'object' || container === null || Array.isArray(container)) throw invalidArgument(`${what}: ${ARCHIVE.configDump} is not a JSON object`);
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw invalidArgument(`${what}: ${ARCHIVE.specDump} is not a JSON object`);
  return { dir, imagesDir, rootfsDiff, deleted: deleted as string[], container, spec };
}

function parseJson<T>(metadata: Map<string, Buffer>, name: string, what: string): T {
  const data = metadata.get(name);
  if (!data) throw invalidArgument(`config.image.image: ${what} has no ${name}: not a container checkpoint`);
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch (err) {
    throw invalidArgument(`${what}: ${name} is not JSON (${(err as Error).message})`);
  }
}
