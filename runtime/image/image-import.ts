// `berthd images import`: a docker save archive or an OCI image layout into
// berth's store, through the same layer pipeline as a pull (digest, diff id and
// size checks, unpacked on a layer worker), recorded like a pulled image so
// ListImages, ImageStatus and CreateContainer see it with its names.
import { randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { RuntimeLog } from '../common/log';
import { describeError, invalidArgument, isBerthError } from '../errors';
import type { ContentBlobs } from './content-blobs';
import { ImageBudget, type ImageLimits } from './image-budget';
import { readArchiveImages, stageArchive, type ArchiveImage } from './image-archive';
import { parseImageConfig, type Platform } from './image-manifest';
import type { ImageRows, LayerRow } from './image-rows';
import type { LayerDownloads } from './layer-download';
import type { LayerGc } from './layer-gc';

export interface ImportedImage {
  id: string;
  names: string[];
}

export interface ImageImporterOptions {
  root: string;
  rows: ImageRows;
  blobs: ContentBlobs;
  downloads: LayerDownloads;
  gc: LayerGc;
  /** The pull's caps over all of an image's layers hold for an import too. */
  imageLimits: ImageLimits;
  platform: Platform;
  log: RuntimeLog;
}

export class ImageImporter {
  constructor(private readonly options: ImageImporterOptions) {}

  /**
   * Imports every image in the archive (a tar stream, gzip-compressed or not) or none: every image's
   * layers are unpacked before any image is recorded, and what a failure left unpacked is collected.
   * The staged copy is removed whatever happens.
   */
  async import(tar: AsyncIterable<Buffer>): Promise<ImportedImage[]> {
    const staging = join(this.options.root, 'import', randomBytes(8).toString('hex'));
    await fsp.mkdir(staging, { recursive: true, mode: 0o700 });
    try {
      const files = await stageArchive(gunzippedIfCompressed(tar), staging);
      const images = await readArchiveImages(files, this.options.platform);
      if (images.length === 0) throw invalidArgument('image archive: it holds no image');
      return await this.options.gc.whilePulling(async () => {
        const prepared: PreparedImage[] = [];
        for (const image of images) prepared.push(await this.prepare(image));
        return prepared.map((p) => this.record(p));
      });
    } catch (err) {
      // Layers unpacked for an image that is not recorded belong to nothing.
      await this.options.gc.collect().catch(() => undefined);
      throw err;
    } finally {
      await fsp.rm(staging, { recursive: true, force: true });
    }
  }

  /** The image's blobs kept and its layers unpacked, through the pull's pipeline (digests, diff ids, limits). */
  private async prepare(image: ArchiveImage): Promise<PreparedImage> {
    const { blobs, downloads } = this.options;
    const config = parseImageConfig(image.configData);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== image.manifest.layers.length) {
      throw invalidArgument(`image archive: the manifest has ${image.manifest.layers.length} layers, the config lists ${diffIds.length} diff ids`);
    }
    for (const blob of image.blobs) await blobs.write(blob.digest, blob.data);
    const budget = new ImageBudget(image.names[0] ?? image.manifest.config.digest, this.options.imageLimits);
    for (const diffId of diffIds) {
      const present = downloads.present(diffId);
      if (present) budget.countPresent(present);
    }
    const layers: LayerRow[] = [];
    const ownBlobs: { digest: string; size: number }[] = [];
    for (const [i, descriptor] of image.manifest.layers.entries()) {
      const file = image.layerFiles.get(descriptor.digest);
      if (!file || !(await isRegularFile(file))) throw invalidArgument(`image archive: layer ${descriptor.digest} is not in the archive`);
      const layer = await downloads.ensure({ open: () => createReadStream(file) }, descriptor, diffIds[i], () => undefined, budget);
      layers.push(layer);
      // Unpacked already from another blob (the same tar compressed otherwise): this image's own blob is
      // kept too, so an export gives back the manifest, and the digests, it came with.
      if (layer.blobDigest !== descriptor.digest) {
        await blobs.copyVerified(file, descriptor.digest, descriptor.size);
        ownBlobs.push({ digest: descriptor.digest, size: descriptor.size });
      }
    }
    budget.checkRecorded(layers);
    return { image, layers, ownBlobs };
  }

  private record({ image, layers, ownBlobs }: PreparedImage): ImportedImage {
    const id = image.manifest.config.digest;
    this.options.rows.putImage({
      id,
      manifestDigest: image.manifestDigest,
      size: image.manifest.config.size + image.manifest.layers.reduce((sum, l) => sum + l.size, 0),
      configJson: image.configData.toString('utf8'),
      annotations: image.manifest.annotations ?? {},
      diffIds: layers.map((l) => l.diffId),
      blobs: [
        ...image.blobs.map((b) => ({ digest: b.digest, size: b.data.length })),
        ...layers.map((l) => ({ digest: l.blobDigest, size: l.compressedSize })),
        ...ownBlobs,
      ],
      names: image.names.map((name) => ({ name, kind: name.includes('@') ? ('digest' as const) : ('tag' as const) })),
    });
    this.options.log.info({ id, names: image.names, layers: layers.length }, 'imported image');
    return { id, names: image.names };
  }
}

interface PreparedImage {
  image: ArchiveImage;
  layers: LayerRow[];
  /** Layer blobs kept beside the ones the layers were unpacked from. */
  ownBlobs: { digest: string; size: number }[];
}

async function isRegularFile(path: string): Promise<boolean> {
  try {
    return (await fsp.lstat(path)).isFile();
  } catch {
    return false;
  }
}

/** `docker save | gzip` is a common way to carry images: a gzip stream is inflated (by zlib, off the main thread). */
async function* gunzippedIfCompressed(tar: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const iterator = tar[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < 2 && !ended) {
    const next = await iterator.next();
    if (next.done) ended = true;
    else head = Buffer.concat([head, next.value]);
  }
  const whole = (async function* (): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (!ended) yield* { [Symbol.asyncIterator]: () => iterator };
  })();
  if (head[0] !== 0x1f || head[1] !== 0x8b) {
    yield* whole;
    return;
  }
  const inflated = pipeline(Readable.from(whole), createGunzip(), () => undefined);
  try {
    yield* inflated as AsyncIterable<Buffer>;
  } catch (err) {
    if (isBerthError(err)) throw err;
    throw invalidArgument(`image archive: the gzip stream is broken: ${describeError(err)}`);
  }
}
