// One layer from the registry to an unpacked directory in a single pass: the
// body is digest- and size-verified as it arrives (and kept among the content
// blobs), decompressed, checked against the unpacked-size and ratio limits,
// hashed for its diff id and unpacked, all streaming, on a layer worker thread
// (layer-workers.ts). A layer already unpacked is not fetched again; the same
// layer wanted by two pulls at once is fetched once; a broken transfer is
// retried; on any failure nothing is left behind.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Semaphore } from '../common/semaphore';
import type { RuntimeLog } from '../common/log';
import { elapsedSeconds, monotonicMark } from '../common/clock';
import { isBerthError, failedPrecondition, unavailable, describeError } from '../errors';
import type { ContentBlobs } from './content-blobs';
import type { ImageBudget } from './image-budget';
import { layerCompression, type Descriptor } from './image-manifest';
import type { ImageReference } from './image-reference';
import type { ImageRows, LayerRow } from './image-rows';
import { removeQuietly, type LayerDirectories } from './layer-directories';
import type { LayerLimits, LayerWorkerPool } from './layer-workers';
import type { RegistryAccess } from './registry-client-on-demand';
import type { RegistryCredentials } from './registry-auth';
import type { RegistryEndpoint } from './registry-endpoints';

/** Where a layer comes from: the image being pulled, with the endpoint that served its manifest. */
export interface LayerSource {
  ref: ImageReference;
  credentials: RegistryCredentials | undefined;
  endpoint: RegistryEndpoint;
}

/** A layer from a local file (an imported archive): the blob is verified all the same. */
export interface LocalLayerSource {
  open(): Readable;
}

export interface LayerDownloadsOptions {
  rows: ImageRows;
  blobs: ContentBlobs;
  layers: LayerDirectories;
  client: RegistryAccess;
  workers: LayerWorkerPool;
  limits: LayerLimits;
  /** Layers downloaded at once, over every pull. */
  maxConcurrent: number;
  log: RuntimeLog;
}

const ATTEMPTS = 3;

export class LayerDownloads {
  private readonly inFlight = new Map<string, Promise<LayerRow>>();
  private readonly slots: Semaphore;

  constructor(private readonly options: LayerDownloadsOptions) {
    this.slots = new Semaphore(options.maxConcurrent);
  }

  /** The layer's row when it is unpacked on disk already. */
  present(diffId: string): LayerRow | undefined {
    const row = this.options.rows.layer(diffId);
    return row && this.options.layers.has(row.dirId) ? row : undefined;
  }

  /**
   * The layer unpacked, fetching it unless it is on disk or already on its way. `onBytes` counts what is
   * downloaded; `budget` is the image's caps (a layer already on its way counts against its first pull's).
   */
  async ensure(source: LayerSource | LocalLayerSource, descriptor: Descriptor, diffId: string, onBytes: (n: number) => void, budget?: ImageBudget): Promise<LayerRow> {
    const present = this.present(diffId);
    if (present) return present;
    const running = this.inFlight.get(diffId);
    if (running) return running;
    const work = this.slots.run(() => this.fetchWithRetries(source, descriptor, diffId, onBytes, budget)).finally(() => this.inFlight.delete(diffId));
    this.inFlight.set(diffId, work);
    return work;
  }

  private async fetchWithRetries(source: LayerSource | LocalLayerSource, descriptor: Descriptor, diffId: string, onBytes: (n: number) => void, budget: ImageBudget | undefined): Promise<LayerRow> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.fetch(source, descriptor, diffId, onBytes, budget);
      } catch (err) {
        // Only a broken transfer is worth another try; bad content or a limit stays bad.
        const retryable = !isBerthError(err) || err.kind === 'Unavailable';
        if (!retryable || attempt >= ATTEMPTS) {
          if (isBerthError(err)) throw err;
          throw unavailable(`downloading layer ${descriptor.digest} failed: ${describeError(err)}`);
        }
        this.options.log.warn({ layer: descriptor.digest, attempt, err: describeError(err) }, 'layer download failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
      }
    }
  }

  private async fetch(source: LayerSource | LocalLayerSource, descriptor: Descriptor, diffId: string, onBytes: (n: number) => void, budget: ImageBudget | undefined): Promise<LayerRow> {
    const { rows, blobs, layers, client } = this.options;
    const started = monotonicMark();
    const body = 'open' in source ? source.open() : (await client.openBlob(source.ref, descriptor, source.credentials, source.endpoint)).body;
    const unpacked = await this.unpack(body, descriptor, diffId, onBytes, budget);
    const dirId = layers.pickDirId(diffId, (candidate) => rows.dirIdOwner(candidate));
    await layers.install(unpacked.tempRoot, dirId);
    await blobs.adopt(unpacked.tempBlob, descriptor.digest);
    const row: LayerRow = {
      diffId,
      dirId,
      blobDigest: descriptor.digest,
      compressedSize: descriptor.size,
      unpackedSize: unpacked.fileBytes,
      entries: unpacked.entries,
    };
    rows.putLayer(row);
    if (unpacked.droppedXattrs.length > 0) {
      this.options.log.debug({ layer: descriptor.digest, xattrs: unpacked.droppedXattrs }, 'layer xattrs not applied (trusted.* and security.* other than file capabilities are not the image\'s to set)');
    }
    this.options.log.debug(
      { layer: descriptor.digest, dir: dirId, bytes: unpacked.compressedBytes, unpacked: unpacked.tarBytes, entries: unpacked.entries, seconds: elapsedSeconds(started) },
      'layer unpacked',
    );
    return row;
  }

  /**
   * Streams `body` (the compressed blob) into a fresh temporary directory, the work done by a layer
   * worker. Throws (after cleaning up) on a digest, size, diff id, limit or path-safety failure.
   */
  private async unpack(body: Readable, descriptor: Descriptor, expectedDiffId: string, onBytes: (n: number) => void, budget: ImageBudget | undefined) {
    const suffix = randomBytes(6).toString('hex');
    const tempRoot = this.options.layers.tempRootFor(suffix);
    const tempDir = join(tempRoot, 'diff');
    const tempBlob = this.options.blobs.tempPathFor(descriptor.digest, suffix);
    try {
      await fsp.mkdir(tempDir, { recursive: true, mode: 0o755 });
      const compression = layerCompression(descriptor.mediaType);
      const spec = { descriptor, compression, limits: this.options.limits, imageBudget: budget?.shared, tempDir, tempBlob };
      const result = await this.options.workers.unpack(spec, body, onBytes);
      if (result.diffId !== expectedDiffId) {
        throw failedPrecondition(`layer ${descriptor.digest}: its content has diff id ${result.diffId}, the image config says ${expectedDiffId}`);
      }
      return { ...result, tempRoot, tempBlob };
    } catch (err) {
      body.destroy();
      // The worker has closed its files by now (unpack settles only after it reports).
      await removeQuietly(tempRoot);
      await removeQuietly(tempBlob);
      throw err;
    }
  }
}
