// A checkpoint shipped as an OCI image, as CRI-O restores it: an image whose
// manifest carries the org.criu.checkpoint.container.name annotation and
// whose layers hold the archive's files (checkpoint/, config.dump, spec.dump,
// rootfs-diff.tar, deleted.files), as `buildah` or checkpointctl make it. The
// files are read from berth's unpacked layers, merged as overlayfs merges
// them (top layer first, whiteouts hide, an opaque directory ends the
// search), and staged like an archive's. Layer content is the image's: no
// link is followed (lstat, O_NOFOLLOW|O_NONBLOCK opens of regular files).
import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { BerthNative } from '../../native';
import { invalidArgument } from '../errors';
import { checkpointStaged, MAX_METADATA_BYTES, type StagedCheckpoint } from './checkpoint-archive-reader';
import { ARCHIVE } from './checkpoint-layout';

/** The manifest annotation that makes an image a checkpoint (its value: the checkpointed container's name). */
export const CHECKPOINT_IMAGE_ANNOTATION = 'org.criu.checkpoint.container.name';
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const MAX_IMAGE_FILES = 100_000;

type Found = { kind: 'file'; path: string } | { kind: 'dir'; paths: string[] } | { kind: 'none' };

/** What the merged layers show at `rel` (one level: a top-level file or directory of the image). */
async function lookup(native: BerthNative, layersTopFirst: string[], rel: string): Promise<Found> {
  const dirs: string[] = [];
  for (const layer of layersTopFirst) {
    const path = join(layer, rel);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (!st) continue;
    if (st.isCharacterDevice() && st.rdev === 0) break; // a whiteout
    if (st.isDirectory()) {
      dirs.push(path);
      if (native.lgetxattr(path, 'trusted.overlay.opaque')?.toString('latin1') === 'y') break;
      continue;
    }
    if (dirs.length > 0) break; // a directory above hides it
    return st.isFile() ? { kind: 'file', path } : { kind: 'none' };
  }
  return dirs.length > 0 ? { kind: 'dir', paths: dirs } : { kind: 'none' };
}

async function copyRegular(from: string, to: string): Promise<void> {
  const source = await fsp.open(from, READ_FLAGS);
  try {
    if (!(await source.stat()).isFile()) throw invalidArgument(`checkpoint image: ${from} is not a regular file`);
    const target = await fsp.open(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const buffer = Buffer.alloc(1024 * 1024);
      for (;;) {
        const { bytesRead } = await source.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        await target.write(buffer.subarray(0, bytesRead));
      }
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

async function readCapped(path: string, name: string, what: string): Promise<Buffer> {
  const handle = await fsp.open(path, READ_FLAGS);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw invalidArgument(`${what}: ${name} is not a regular file`);
    if (st.size > MAX_METADATA_BYTES) throw invalidArgument(`${what}: ${name} is larger than ${MAX_METADATA_BYTES} bytes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Stages the checkpoint an image holds into `dir` (an existing, empty directory). */
export async function stageCheckpointImage(native: BerthNative, reference: string, layersTopFirst: string[], dir: string): Promise<StagedCheckpoint> {
  const what = `checkpoint image ${reference}`;
  const metadata = new Map<string, Buffer>();
  for (const name of [ARCHIVE.configDump, ARCHIVE.specDump, ARCHIVE.deletedFiles]) {
    const found = await lookup(native, layersTopFirst, name);
    if (found.kind === 'file') metadata.set(name, await readCapped(found.path, name, what));
  }
  let rootfsDiff: string | undefined;
  const diff = await lookup(native, layersTopFirst, ARCHIVE.rootfsDiff);
  if (diff.kind === 'file') {
    rootfsDiff = join(dir, ARCHIVE.rootfsDiff);
    await copyRegular(diff.path, rootfsDiff);
  }
  const images = await lookup(native, layersTopFirst, ARCHIVE.images);
  if (images.kind === 'dir') {
    const target = join(dir, ARCHIVE.images);
    await fsp.mkdir(target, { mode: 0o700 });
    // Merged: the top-most layer's entry of a name wins; a whiteout hides the name below.
    const seen = new Set<string>();
    for (const layerDir of images.paths) {
      for (const name of await fsp.readdir(layerDir)) {
        if (seen.has(name)) continue;
        seen.add(name);
        if (seen.size > MAX_IMAGE_FILES) throw invalidArgument(`${what}: more than ${MAX_IMAGE_FILES} files under ${ARCHIVE.images}/`);
        const st = await fsp.lstat(join(layerDir, name));
        if (st.isFile()) await copyRegular(join(layerDir, name), join(target, name));
      }
    }
  }
  return checkpointStaged(dir, metadata, rootfsDiff, what);
}
