// One layer from the registry to an unpacked directory in a single pass: the
// body is digest- and size-verified as it arrives (and kept in the content
// store), decompressed, checked against the unpacked-size and ratio limits,
// hashed for its diff id and unpacked, all streaming, on a layer worker thread
// (layer-workers.ts). On any failure the temporary directory and blob are
// removed: nothing is left behind.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { failedPrecondition } from '../errors';
import { layerCompression, type Descriptor } from './image-manifest';
import type { UnpackStats } from './layer-unpacker';
import type { LayerLimits, LayerWorkerPool } from './layer-workers';

export type { LayerLimits } from './layer-workers';

export interface DownloadedLayer extends UnpackStats {
  /** Directory holding the unpacked layer ("<tmp>/diff"), ready to be renamed into place. */
  tempDir: string;
  /** The compressed blob, ready to be renamed into the content store. */
  tempBlob: string;
  compressedBytes: number;
  tarBytes: number;
}

export async function removeQuietly(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Streams `body` (the compressed blob) into a fresh directory under `layersDir`, the work done by
 * one of `workers`. Throws (after cleaning up) on a digest, size, diff id, limit or path-safety failure.
 */
export async function downloadLayer(options: {
  body: Readable;
  descriptor: Descriptor;
  expectedDiffId: string;
  layersDir: string;
  contentTempDir: string;
  limits: LayerLimits;
  workers: LayerWorkerPool;
  onBytes: (n: number) => void;
}): Promise<DownloadedLayer> {
  const { body, descriptor, limits } = options;
  const suffix = randomBytes(6).toString('hex');
  const tempRoot = join(options.layersDir, `tmp-${suffix}`);
  const tempDir = join(tempRoot, 'diff');
  const tempBlob = join(options.contentTempDir, `${descriptor.digest.slice(7)}-${suffix}`);
  try {
    await fsp.mkdir(tempDir, { recursive: true, mode: 0o755 });
    const result = await options.workers.unpack({ descriptor, compression: layerCompression(descriptor.mediaType), limits, tempDir, tempBlob }, body, options.onBytes);
    if (result.diffId !== options.expectedDiffId) {
      throw failedPrecondition(`layer ${descriptor.digest}: its content has diff id ${result.diffId}, the image config says ${options.expectedDiffId}`);
    }
    return { entries: result.entries, fileBytes: result.fileBytes, tempDir: tempRoot, tempBlob, compressedBytes: result.compressedBytes, tarBytes: result.tarBytes };
  } catch (err) {
    body.destroy();
    // The worker has closed its files by now (unpack settles only after it reports).
    await removeQuietly(tempRoot);
    await removeQuietly(tempBlob);
    throw err;
  }
}
