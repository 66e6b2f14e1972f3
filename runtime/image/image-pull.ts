// A pull, from the reference to a recorded image: the manifest (through an
// index to this platform's entry), the config, then every layer at once (see
// layer-download.ts), and the image's rows last, so an image is listed only
// once all of it is on disk. Two pulls of the same reference with the same
// credentials share one piece of work.
import { timeCall, type CallRecorder } from '../common/call-timing';
import type { RuntimeLog } from '../common/log';
import { describeError, invalidArgument, isBerthError, unavailable } from '../errors';
import type { ContentBlobs } from './content-blobs';
import { ImageBudget, type ImageLimits } from './image-budget';
import { noPlatformMatch, parseImageConfig, parseManifest, pickPlatform, type ImageConfigFile, type ImageManifest, type Platform } from './image-manifest';
import { digestedName, formatImageReference, taggedName, type ImageReference } from './image-reference';
import type { ImageNameKind, ImageRows, LayerRow } from './image-rows';
import type { LayerDownloads, LayerSource } from './layer-download';
import type { LayerGc } from './layer-gc';
import type { LayerWorkerPool } from './layer-workers';
import { PullProgress } from './pull-progress';
import type { RegistryCredentials } from './registry-auth';
import type { RegistryAccess } from './registry-client-on-demand';

/** berth_image_pull_duration_seconds / berth_image_pull_bytes_total, registered by runtime/stats. */
export interface ImagePullMetrics {
  observeImagePull(seconds: number, bytes: number, outcome?: 'ok' | 'error'): void;
}

export interface ImagePullerOptions {
  rows: ImageRows;
  blobs: ContentBlobs;
  client: RegistryAccess;
  downloads: LayerDownloads;
  workers: LayerWorkerPool;
  gc: LayerGc;
  /** Caps over all of an image's layers (image.max_image_unpacked_bytes, image.max_image_entries). */
  imageLimits: ImageLimits;
  platform: Platform;
  log: RuntimeLog;
  metrics?: ImagePullMetrics;
}

/** The manifest a pull unpacks, with every blob met on the way to it (kept in the content blobs). */
interface ResolvedManifest {
  topDigest: string;
  manifest: ImageManifest;
  config: ImageConfigFile;
  source: LayerSource;
  blobs: { digest: string; data: Buffer }[];
  configJson: string;
}

export class ImagePuller {
  private readonly pulls = new Map<string, Promise<string>>();

  constructor(private readonly options: ImagePullerOptions) {}

  /** Pulls an image; concurrent pulls of the same reference share the work. Resolves with the image id. */
  pull(ref: ImageReference, credentials?: RegistryCredentials): Promise<string> {
    const key = [formatImageReference(ref), credentials?.username, credentials?.auth, credentials?.registryToken, credentials?.identityToken].join('|');
    const running = this.pulls.get(key);
    if (running) {
      this.options.log.debug({ image: formatImageReference(ref) }, 'pull already in progress; waiting for it');
      return running;
    }
    const work = this.options.gc.whilePulling(() => this.pullOnce(ref, credentials)).finally(() => this.pulls.delete(key));
    this.pulls.set(key, work);
    return work;
  }

  private async pullOnce(ref: ImageReference, credentials: RegistryCredentials | undefined): Promise<string> {
    const { log, metrics } = this.options;
    const name = formatImageReference(ref);
    const pulled = { imageId: '', layers: 0, bytes: 0 };
    const record: CallRecorder = (seconds, outcome) => {
      metrics?.observeImagePull(seconds, pulled.bytes, outcome);
      if (outcome === 'error') return;
      const mbPerSecond = Number((pulled.bytes / 1e6 / Math.max(seconds, 0.001)).toFixed(1));
      log.info({ image: name, id: pulled.imageId, layers: pulled.layers, downloadedBytes: pulled.bytes, seconds, mbPerSecond }, 'pulled image');
    };
    try {
      return await timeCall(async () => {
        log.info({ image: name }, 'pulling image');
        const resolved = await this.resolveManifest(ref, credentials);
        pulled.layers = resolved.manifest.layers.length;
        pulled.imageId = await this.fetchAndRecord(ref, resolved, (n) => (pulled.bytes += n), new ImageBudget(name, this.options.imageLimits));
        return pulled.imageId;
      }, record);
    } catch (err) {
      log.warn({ image: name, err: describeError(err) }, 'pull failed');
      // A berth error says what went wrong already; anything else broke the transfer.
      throw isBerthError(err) ? err : unavailable(`pulling ${name} failed: ${describeError(err)}`);
    }
  }

  /** The manifest for this platform and the image config, both verified. */
  private async resolveManifest(ref: ImageReference, credentials: RegistryCredentials | undefined): Promise<ResolvedManifest> {
    const { client, platform } = this.options;
    const name = formatImageReference(ref);
    const top = await client.fetchManifest(ref, ref.digest ?? ref.tag!, credentials);
    const parsedTop = parseManifest(top.body, top.contentType);
    const blobs = [{ digest: top.digest, data: top.body }];
    let manifest: ImageManifest;
    let endpoint = top.endpoint;
    if (parsedTop.kind === 'index') {
      const picked = pickPlatform(parsedTop, platform);
      if (!picked) throw noPlatformMatch(parsedTop, platform);
      const fetched = await client.fetchManifest(ref, picked.digest, credentials);
      const parsed = parseManifest(fetched.body, fetched.contentType);
      if (parsed.kind !== 'manifest') throw invalidArgument(`${name}: the index entry for this platform is itself an index`);
      manifest = parsed;
      endpoint = fetched.endpoint;
      blobs.push({ digest: fetched.digest, data: fetched.body });
    } else {
      manifest = parsedTop;
    }
    const configData = await client.fetchSmallBlob(ref, manifest.config, credentials, endpoint);
    const config = parseImageConfig(configData);
    blobs.push({ digest: manifest.config.digest, data: configData });
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw invalidArgument(`${name}: the manifest has ${manifest.layers.length} layers, the config lists ${config.rootfs.diff_ids.length} diff ids`);
    }
    return { topDigest: top.digest, manifest, config, source: { ref, credentials, endpoint }, blobs, configJson: configData.toString('utf8') };
  }

  /** Fetches what is missing, then records the image; resolves with its id (the config digest). */
  private async fetchAndRecord(ref: ImageReference, resolved: ResolvedManifest, onBytes: (n: number) => void, budget: ImageBudget): Promise<string> {
    const { rows, blobs, downloads, workers } = this.options;
    const { manifest, source } = resolved;
    const diffIds = resolved.config.rootfs.diff_ids;
    workers.warm(diffIds.filter((diffId) => !rows.layer(diffId)).length);
    for (const diffId of diffIds) {
      const present = downloads.present(diffId);
      if (present) budget.countPresent(present);
    }
    for (const blob of resolved.blobs) await blobs.write(blob.digest, blob.data);

    const missing = manifest.layers.filter((_, i) => !rows.layer(diffIds[i]));
    const progress = new PullProgress(formatImageReference(ref), missing.reduce((sum, l) => sum + l.size, 0), manifest.layers.length, this.options.log);
    const counted = (n: number): void => {
      onBytes(n);
      progress.bytesReceived(n);
    };
    // Every layer settles before the pull answers, so a failed pull has no download of its own still writing.
    const settled = await Promise.allSettled(manifest.layers.map(async (descriptor, i) => {
      const layer = await downloads.ensure(source, descriptor, diffIds[i], counted, budget);
      progress.layerDone();
      return layer;
    }));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const layers = settled.map((s) => (s as PromiseFulfilledResult<LayerRow>).value);
    budget.checkRecorded(layers);

    const imageId = manifest.config.digest;
    const names: { name: string; kind: ImageNameKind }[] = [];
    // A tag names one image: pulling it again moves it to the new image.
    const tag = taggedName(ref);
    if (tag) names.push({ name: tag, kind: 'tag' });
    names.push({ name: digestedName(ref, resolved.topDigest), kind: 'digest' });
    rows.putImage({
      id: imageId,
      manifestDigest: resolved.topDigest,
      size: manifest.config.size + manifest.layers.reduce((sum, l) => sum + l.size, 0),
      configJson: resolved.configJson,
      annotations: manifest.annotations ?? {},
      diffIds: layers.map((l) => l.diffId),
      blobs: [...resolved.blobs.map((b) => ({ digest: b.digest, size: b.data.length })), ...layers.map((l) => ({ digest: l.blobDigest, size: l.compressedSize }))],
      names,
    });
    return imageId;
  }
}
