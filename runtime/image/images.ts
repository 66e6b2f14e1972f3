// berth's images, as the image RPCs and the container model see them: lookup
// by id, id prefix, tag, digest or short name; pull; remove; the layers a
// container is made from; ImageFsInfo's figures. The work is done by the parts
// built here: rows in SQLite (image-rows.ts), blobs by digest
// (content-blobs.ts), unpacked layers (layer-directories.ts), the pull
// (image-pull.ts, layer-download.ts) and collection (layer-gc.ts).
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { RuntimeLog } from '../common/log';
import type { BerthConfig } from '../config';
import { describeError, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { BerthDatabase } from '../store/database';
import { ContentBlobs } from './content-blobs';
import { ImageFsAccounting, type ImageFsUsage, type WritableLayerTotals } from './image-fs-usage';
import { hostPlatform, userOfConfig, type ImageConfigFile, type Platform } from './image-manifest';
import { ImageExporter, type ExportPlan, type ExportRequest } from './image-export';
import { ImageImporter, type ImportedImage } from './image-import';
import { ImagePuller, type ImagePullMetrics } from './image-pull';
import { digestedName, looksLikeImageId, parseImageReference, taggedName, type ImageReference } from './image-reference';
import { ImageRows, type ImageNameKind, type ImageRow } from './image-rows';
import type { ContainerImageSource, ImageForContainer, ImageRecord, ImageStatusInfo } from './image-types';
import { LayerDirectories } from './layer-directories';
import { LayerDownloads } from './layer-download';
import { LayerGc, type LayerHolds } from './layer-gc';
import { LayerWorkerPool } from './layer-workers';
import type { RegistryCredentials } from './registry-auth';
import { RegistryClientOnDemand } from './registry-client-on-demand';

export interface ImagesOptions {
  config: BerthConfig;
  db: BerthDatabase;
  log: RuntimeLog;
  /** Where pull duration and bytes go (RuntimeMetrics on ctx.metrics.registry). */
  metrics?: ImagePullMetrics;
  /** Platform images are picked for (default: this host). */
  platform?: Platform;
}

/** How a reference matched an image. */
interface Match {
  row: ImageRow;
  by: 'id' | ImageNameKind;
  name?: string;
}

export class Images implements ContainerImageSource, LayerHolds {
  private readonly rows: ImageRows;
  private readonly blobs: ContentBlobs;
  private readonly layers: LayerDirectories;
  private readonly client: RegistryClientOnDemand;
  private readonly workers: LayerWorkerPool;
  private readonly gc: LayerGc;
  private readonly puller: ImagePuller;
  private readonly importer: ImageImporter;
  private readonly exporter: ImageExporter;
  private straysCollected: Promise<void> | undefined;
  private readonly fsAccounting: ImageFsAccounting;

  constructor(private readonly options: ImagesOptions) {
    const { config, log } = options;
    const image = config.image;
    this.rows = new ImageRows(options.db);
    this.blobs = new ContentBlobs(config.root);
    this.layers = new LayerDirectories(config.root);
    this.workers = new LayerWorkerPool(Math.min(image.max_concurrent_downloads, availableParallelism()));
    this.client = new RegistryClientOnDemand({
      registries: image.registries,
      log,
      headersTimeoutMs: Math.min(30_000, image.pull_progress_timeout_seconds * 1000),
      bodyTimeoutMs: image.pull_progress_timeout_seconds * 1000,
    });
    this.gc = new LayerGc(this.rows, this.layers, this.blobs, log);
    this.fsAccounting = new ImageFsAccounting({ root: config.root, rows: this.rows, blobs: this.blobs });
    const imageLimits = { maxUnpackedBytes: image.max_image_unpacked_bytes, maxEntries: image.max_image_entries };
    const downloads = new LayerDownloads({
      rows: this.rows,
      blobs: this.blobs,
      layers: this.layers,
      client: this.client,
      workers: this.workers,
      limits: { maxUnpackedBytes: image.max_layer_unpacked_bytes, maxCompressionRatio: image.max_compression_ratio },
      maxConcurrent: image.max_concurrent_downloads,
      log,
    });
    this.puller = new ImagePuller({
      rows: this.rows,
      blobs: this.blobs,
      client: this.client,
      downloads,
      workers: this.workers,
      gc: this.gc,
      imageLimits,
      platform: options.platform ?? hostPlatform(),
      log,
      metrics: options.metrics,
    });
    this.exporter = new ImageExporter({ rows: this.rows, blobs: this.blobs, gc: this.gc });
    this.importer = new ImageImporter({
      root: config.root, rows: this.rows, blobs: this.blobs, downloads, gc: this.gc, imageLimits, platform: options.platform ?? hostPlatform(), log,
    });
  }

  /**
   * Creates the directories and forgets layers gone from disk; what interrupted pulls and
   * collections left is collected in the background (LayerGc.collectStrays).
   */
  init(): void {
    this.blobs.init();
    this.layers.init();
    // What an interrupted import staged.
    rmSync(join(this.options.config.root, 'import'), { recursive: true, force: true });
    // A layer removed by hand is fetched again by the next pull that needs it.
    for (const layer of this.rows.allLayers()) if (!this.layers.has(layer.dirId)) this.rows.deleteLayer(layer.diffId);
    this.straysCollected = this.gc.collectStrays().catch((err: unknown) => {
      this.options.log.warn({ err: describeError(err) }, 'collecting leftovers in the image store failed');
    });
  }

  async close(): Promise<void> {
    await this.straysCollected;
    await this.client.close();
    await this.workers.close();
  }

  resolve(reference: string): ImageRecord | undefined {
    const match = this.lookup(reference);
    return match ? this.recordOf(match.row) : undefined;
  }

  /** Moves whenever an image or a name of one is added or removed: what list() and resolve() answered before may be stale. */
  get generation(): number {
    return this.rows.generation;
  }

  /** Every image, oldest first; with a filter, the one image it names (or none). */
  list(filterReference?: string): ImageRecord[] {
    if (filterReference) {
      const one = this.resolve(filterReference);
      return one ? [one] : [];
    }
    return this.rows.allImages().map((row) => this.recordOf(row));
  }

  status(reference: string): ImageStatusInfo | undefined {
    const match = this.lookup(reference);
    if (!match) return undefined;
    const image = this.recordOf(match.row);
    const layers = this.rows.layersOf(image.id);
    return {
      image,
      info: {
        id: image.id,
        repoTags: image.repoTags,
        repoDigests: image.repoDigests,
        manifestDigest: match.row.manifestDigest,
        imageSpec: JSON.parse(match.row.configJson) as unknown,
        layers: layers.map((l) => ({ diffId: l.diffId, digest: l.blobDigest, size: l.compressedSize, unpackedSize: l.unpackedSize })),
        pinned: image.pinned,
      },
    };
  }

  forContainer(reference: string): ImageForContainer {
    const match = this.lookup(reference);
    if (!match) throw notFound(`image "${reference}" not found`);
    const id = match.row.id;
    const layerDirs = this.rows.layersOf(id).map((l) => this.layers.diffOf(l.dirId));
    if (layerDirs.length !== this.rows.layerCountOf(id)) throw failedPrecondition(`image ${id} is missing layers on disk; pull it again`);
    return { image: this.recordOf(match.row), layerDirs };
  }

  holdLayers(holder: string, imageId: string): void {
    this.gc.holdLayers(holder, imageId);
  }

  holdImageAsVolume(holder: string, imageId: string): void {
    this.gc.holdImageAsVolume(holder, imageId);
  }

  async releaseLayers(holder: string): Promise<void> {
    await this.gc.releaseLayers(holder);
    this.fsAccounting.invalidate();
  }

  /** Imports a docker save archive or an OCI layout, as a tar stream (see image-import.ts). */
  async importArchive(tar: AsyncIterable<Buffer>): Promise<ImportedImage[]> {
    try {
      return await this.importer.import(tar);
    } finally {
      this.fsAccounting.invalidate();
    }
  }

  /**
   * Lays out an export of the images `references` name (see image-export.ts); NOT_FOUND names the first
   * unknown one. An image named by a tag goes out under that tag; by id or digest, under all its tags.
   */
  async prepareExport(references: readonly string[]): Promise<ExportPlan> {
    if (references.length === 0) throw invalidArgument('export: name at least one image');
    const requests = new Map<string, ExportRequest>();
    for (const reference of references) {
      const match = this.lookup(reference);
      if (!match) throw notFound(`image "${reference}" not found`);
      const request = requests.get(match.row.id) ?? { row: match.row, names: [] };
      const names = match.by === 'tag' && match.name ? [match.name] : this.recordOf(match.row).repoTags;
      for (const name of names) if (!request.names.includes(name)) request.names.push(name);
      requests.set(match.row.id, request);
    }
    return this.exporter.plan([...requests.values()]);
  }

  /** Streams a prepared export as a tar into `out`. */
  writeExport(plan: ExportPlan, out: Writable): Promise<void> {
    return this.exporter.write(plan, out);
  }

  /** Pulls an image (see image-pull.ts); resolves with it as recorded. */
  async pull(image: ImageReference, credentials?: RegistryCredentials): Promise<ImageRecord> {
    try {
      const id = await this.puller.pull(image, credentials);
      return this.recordOf(this.rows.image(id)!);
    } finally {
      // A failed pull changes the figures too: the layers it unpacked are collected.
      this.fsAccounting.invalidate();
    }
  }

  /**
   * Removes by id, tag or digest. By tag, only that tag goes when the image has others;
   * otherwise the image and every name of it go. Succeeds when nothing matches.
   */
  async remove(reference: string): Promise<{ removed: boolean; imageId?: string }> {
    const match = this.lookup(reference);
    if (!match) return { removed: false };
    const image = this.recordOf(match.row);
    if (match.by === 'tag' && match.name && image.repoTags.length > 1) {
      this.rows.deleteName(match.name);
      this.options.log.info({ image: image.id, tag: match.name }, 'untagged image');
      return { removed: false, imageId: image.id };
    }
    const users = this.rows.volumeUsers(image.id);
    if (users.length > 0) {
      // As containerd: an image a running container mounts stays until that container is removed.
      throw failedPrecondition(`image ${image.id} is in use as a volume by container${users.length > 1 ? 's' : ''} ${users.join(', ')}; remove ${users.length > 1 ? 'them' : 'it'} first`);
    }
    this.rows.deleteImage(image.id);
    this.options.log.info({ image: image.id, tags: image.repoTags }, 'removed image');
    await this.gc.collect();
    this.fsAccounting.invalidate();
    return { removed: true, imageId: image.id };
  }

  /** ImageFsInfo's figures, kept off the request path (see image-fs-usage.ts). */
  filesystemUsage(): Promise<ImageFsUsage> {
    return this.fsAccounting.usage();
  }

  /** Where ImageFsInfo's container figure comes from: the writable layers measured in the background. */
  setWritableLayers(source: WritableLayerTotals): void {
    this.fsAccounting.setWritableLayers(source);
  }

  private recordOf(row: ImageRow): ImageRecord {
    const names = this.rows.namesOf(row.id);
    const runtime = (JSON.parse(row.configJson) as ImageConfigFile).config ?? {};
    const user = userOfConfig(runtime.User);
    return {
      id: row.id,
      repoTags: names.filter((n) => n.kind === 'tag').map((n) => n.name),
      repoDigests: names.filter((n) => n.kind === 'digest').map((n) => n.name),
      size: row.size,
      ...(user.uid !== undefined ? { uid: user.uid } : {}),
      username: user.username,
      pinned: row.pinned,
      annotations: JSON.parse(row.annotationsJson) as Record<string, string>,
      config: runtime,
    };
  }

  /** Finds an image and says how the reference matched it. */
  private lookup(reference: string): Match | undefined {
    const text = reference.trim();
    if (text === '') return undefined;
    if (looksLikeImageId(text)) {
      const row = this.rows.image(text.startsWith('sha256:') ? text : `sha256:${text}`);
      if (row) return { row, by: 'id' };
    }
    const prefix = /^(?:sha256:)?([a-f0-9]{3,63})$/.exec(text);
    if (prefix) {
      const rows = this.rows.imagesWithIdPrefix(`sha256:${prefix[1]}`);
      // A short hex string may also be a repository name ("abc" -> docker.io/library/abc:latest): prefer the name.
      if (rows.length === 1) return this.lookupName(text) ?? { row: rows[0], by: 'id' };
    }
    return this.lookupName(text);
  }

  private lookupName(text: string): Match | undefined {
    let ref: ImageReference;
    try {
      ref = parseImageReference(text);
    } catch {
      return undefined;
    }
    const byName = (name: string, kind: ImageNameKind): Match | undefined => {
      const id = this.rows.imageIdByName(name, kind);
      const row = id ? this.rows.image(id) : undefined;
      return row ? { row, by: kind, name } : undefined;
    };
    if (!ref.digest) return byName(taggedName(ref)!, 'tag');
    const name = digestedName(ref, ref.digest);
    const byDigest = byName(name, 'digest');
    if (byDigest) return byDigest;
    // A digest reference may name the image's config (its id).
    const byId = this.rows.image(ref.digest);
    return byId ? { row: byId, by: 'digest', name } : undefined;
  }
}
