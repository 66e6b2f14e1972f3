// `berthd images import`: a docker save archive or an OCI image layout into
// berth's store, through the same layer pipeline as a pull (digest, diff id and
// size checks, unpacked on a layer worker), recorded like a pulled image so
// ListImages, ImageStatus and CreateContainer see it with its names.
import { randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeLog } from '../common/log';
import { invalidArgument } from '../errors';
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

  /** Imports every image in the archive (a tar stream); the staged copy is removed whatever happens. */
  async import(tar: AsyncIterable<Buffer>): Promise<ImportedImage[]> {
    const staging = join(this.options.root, 'import', randomBytes(8).toString('hex'));
    await fsp.mkdir(staging, { recursive: true, mode: 0o700 });
    try {
      const files = await stageArchive(tar, staging);
      const images = await readArchiveImages(files, this.options.platform);
      if (images.length === 0) throw invalidArgument('image archive: it holds no image');
      const out: ImportedImage[] = [];
      for (const image of images) out.push(await this.options.gc.whilePulling(() => this.record(image)));
      return out;
    } finally {
      await fsp.rm(staging, { recursive: true, force: true });
    }
  }

  private async record(image: ArchiveImage): Promise<ImportedImage> {
    const { rows, blobs, downloads, log } = this.options;
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
    for (const [i, descriptor] of image.manifest.layers.entries()) {
      const file = image.layerFiles.get(descriptor.digest);
      if (!file) throw invalidArgument(`image archive: layer ${descriptor.digest} is not in the archive`);
      layers.push(await downloads.ensure({ open: () => createReadStream(file) }, descriptor, diffIds[i], () => undefined, budget));
    }
    budget.checkRecorded(layers);
    const id = image.manifest.config.digest;
    rows.putImage({
      id,
      manifestDigest: image.manifestDigest,
      size: image.manifest.config.size + image.manifest.layers.reduce((sum, l) => sum + l.size, 0),
      configJson: image.configData.toString('utf8'),
      annotations: image.manifest.annotations ?? {},
      diffIds: layers.map((l) => l.diffId),
      blobs: [...image.blobs.map((b) => ({ digest: b.digest, size: b.data.length })), ...layers.map((l) => ({ digest: l.blobDigest, size: l.compressedSize }))],
      names: image.names.map((name) => ({ name, kind: name.includes('@') ? ('digest' as const) : ('tag' as const) })),
    });
    log.info({ id, names: image.names, layers: layers.length }, 'imported image');
    return { id, names: image.names };
  }
}
