// berth's image store: blobs by digest under <root>/content, unpacked layers
// under <root>/layers/<short-id>/diff, metadata in SQLite. Pulls stream every
// layer straight from the registry into its directory (see layer-download.ts),
// several at once (each unpacked on its own worker thread), skipping layers already present; two pulls of the same image
// share one piece of work. Removal drops names, then collects whatever no image
// and no container still uses.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, promises as fsp, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { BerthConfig } from '../config';
import { BerthError, describeError, failedPrecondition, invalidArgument, notFound, unavailable } from '../errors';
import type { BerthDatabase } from '../store/database';
import { hostPlatform, noPlatformMatch, parseImageConfig, parseManifest, pickPlatform, type Descriptor, type ImageConfigFile, type ImageManifest, type Platform } from './image-manifest';
import { digestedName, formatImageReference, looksLikeImageId, parseImageReference, taggedName, type ImageReference } from './image-reference';
import type { ContainerImageSource, ImageForContainer, ImageRecord } from './image-types';
import { downloadLayer, removeQuietly } from './layer-download';
import { LayerWorkerPool } from './layer-workers';
import { RegistryClient, type RegistryCredentials, type RegistryEndpoint, type RegistryLogger } from './registry-client';

export interface ImageStoreLogger extends RegistryLogger {
  error(obj: object, msg: string): void;
}

export interface ImageStoreOptions {
  config: BerthConfig;
  db: BerthDatabase;
  log: ImageStoreLogger;
  /** Where pull duration and bytes go (RuntimeMetrics on ctx.metrics.registry). */
  metrics?: ImagePullMetrics;
  /** Platform images are picked for (default: this host). */
  platform?: Platform;
}

/** berth_image_pull_duration_seconds / berth_image_pull_bytes_total, registered by runtime/stats. */
export interface ImagePullMetrics {
  observeImagePull(seconds: number, bytes: number, outcome?: 'ok' | 'error'): void;
}

export interface FilesystemUsageInfo {
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

export interface ImageStatusInfo {
  image: ImageRecord;
  /** Everything known about the image, for ImageStatus(verbose).info["info"]. */
  info: Record<string, unknown>;
}

const MIGRATIONS = [
  {
    owner: 'images',
    version: 1,
    sql: `
      CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        config_json TEXT NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        annotations_json TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
      );
      CREATE TABLE image_names (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
      );
      CREATE INDEX image_names_by_image ON image_names(image_id);
      CREATE TABLE layers (
        diff_id TEXT PRIMARY KEY,
        dir_id TEXT NOT NULL UNIQUE,
        blob_digest TEXT NOT NULL,
        compressed_size INTEGER NOT NULL,
        unpacked_size INTEGER NOT NULL,
        entries INTEGER NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        diff_id TEXT NOT NULL,
        PRIMARY KEY (image_id, position)
      );
      CREATE INDEX image_layers_by_diff ON image_layers(diff_id);
      CREATE TABLE image_blobs (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (image_id, digest)
      );
      CREATE TABLE layer_holds (
        holder TEXT NOT NULL,
        diff_id TEXT NOT NULL,
        PRIMARY KEY (holder, diff_id)
      );
    `,
  },
];

interface ImageRow {
  id: string;
  manifest_digest: string;
  size: number;
  config_json: string;
  pinned: number;
  annotations_json: string;
}

interface LayerRow {
  diff_id: string;
  dir_id: string;
  blob_digest: string;
  compressed_size: number;
  unpacked_size: number;
  entries: number;
}

/** uid/username from an image config's User ("1000", "1000:1000", "app", "app:grp"). */
export function userOfConfig(user: string | undefined): { uid?: number; username: string } {
  if (!user) return { username: '' };
  const name = user.split(':')[0];
  if (/^\d+$/.test(name)) return { uid: Number(name), username: '' };
  return { username: name };
}

/**
 * Marks `dir` as a top of directory hierarchies (chattr +T) on ext2/3/4, where each new
 * subdirectory then goes to its own block group as top-level directories do. Layers are
 * unrelated trees, and a layer unpacked beside the inodes of one just removed pays dearly
 * on ext4 without a journal: it skips each recently freed inode one at a time (~0.1-0.2 ms
 * per created file after a removal of a large image). Elsewhere the flag is refused: nothing changes.
 */
function spreadSubdirectories(dir: string): void {
  // Not awaited: a layer unpacked before it takes effect is merely not spread.
  execFile('chattr', ['+T', dir], { timeout: 5_000 }, () => undefined);
}

class Semaphore {
  private waiting: (() => void)[] = [];
  private active = 0;
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export class ImageStore implements ContainerImageSource {
  readonly contentDir: string;
  readonly layersDir: string;
  private readonly contentTempDir: string;
  private readonly client: RegistryClient;
  private readonly pulls = new Map<string, Promise<ImageRecord>>();
  private readonly layerWork = new Map<string, Promise<LayerRow>>();
  private readonly downloads: Semaphore;
  private readonly workers: LayerWorkerPool;
  private readonly platform: Platform;
  private activePulls = 0;
  private gcPending = false;

  constructor(private readonly options: ImageStoreOptions) {
    const { config } = options;
    this.contentDir = join(config.root, 'content', 'sha256');
    this.contentTempDir = join(config.root, 'content', 'tmp');
    this.layersDir = join(config.root, 'layers');
    this.platform = options.platform ?? hostPlatform();
    this.downloads = new Semaphore(config.image.max_concurrent_downloads);
    this.workers = new LayerWorkerPool(Math.min(config.image.max_concurrent_downloads, availableParallelism()));
    this.client = new RegistryClient({
      registries: config.image.registries,
      log: options.log,
      headersTimeoutMs: Math.min(30_000, config.image.pull_timeout_seconds * 1000),
      bodyTimeoutMs: config.image.pull_timeout_seconds * 1000,
    });
  }

  /** Creates tables and directories and removes what an interrupted pull left. */
  init(): void {
    this.options.db.migrate(MIGRATIONS);
    for (const dir of [this.contentDir, this.contentTempDir, this.layersDir]) mkdirSync(dir, { recursive: true, mode: 0o711 });
    spreadSubdirectories(this.layersDir);
    for (const name of readdirSync(this.layersDir)) if (name.startsWith('tmp-')) rmSync(join(this.layersDir, name), { recursive: true, force: true });
    for (const name of readdirSync(this.contentTempDir)) rmSync(join(this.contentTempDir, name), { force: true });
    // Layers recorded but missing on disk (e.g. removed by hand) are forgotten, so a pull fetches them again.
    const db = this.options.db.db;
    for (const row of db.prepare('SELECT diff_id, dir_id FROM layers').all() as LayerRow[]) {
      if (!existsSync(join(this.layersDir, row.dir_id, 'diff'))) db.prepare('DELETE FROM layers WHERE diff_id = ?').run(row.diff_id);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.workers.close();
  }

  // ---- reading ----

  private recordOf(row: ImageRow): ImageRecord {
    const names = this.options.db.db.prepare('SELECT name, kind FROM image_names WHERE image_id = ? ORDER BY name').all(row.id) as { name: string; kind: string }[];
    const config = JSON.parse(row.config_json) as ImageConfigFile;
    const runtime = config.config ?? {};
    const user = userOfConfig(runtime.User);
    return {
      id: row.id,
      repoTags: names.filter((n) => n.kind === 'tag').map((n) => n.name),
      repoDigests: names.filter((n) => n.kind === 'digest').map((n) => n.name),
      size: row.size,
      ...(user.uid !== undefined ? { uid: user.uid } : {}),
      username: user.username,
      pinned: row.pinned === 1,
      annotations: JSON.parse(row.annotations_json) as Record<string, string>,
      config: runtime,
    };
  }

  private row(id: string): ImageRow | undefined {
    return this.options.db.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
  }

  /** Finds an image and says how the reference matched it. */
  private lookup(reference: string): { row: ImageRow; by: 'id' | 'tag' | 'digest'; name?: string } | undefined {
    const db = this.options.db.db;
    const text = reference.trim();
    if (text === '') return undefined;
    if (looksLikeImageId(text)) {
      const row = this.row(text.startsWith('sha256:') ? text : `sha256:${text}`);
      if (row) return { row, by: 'id' };
    }
    const prefix = /^(?:sha256:)?([a-f0-9]{3,63})$/.exec(text);
    if (prefix) {
      const rows = db.prepare("SELECT * FROM images WHERE id LIKE ? LIMIT 2").all(`sha256:${prefix[1]}%`) as ImageRow[];
      if (rows.length === 1) {
        // A short hex string may also be a repository name ("abc" -> docker.io/library/abc:latest): prefer the name.
        const byName = this.lookupName(text);
        return byName ?? { row: rows[0], by: 'id' };
      }
    }
    return this.lookupName(text);
  }

  private lookupName(text: string): { row: ImageRow; by: 'tag' | 'digest'; name: string } | undefined {
    let ref: ImageReference;
    try {
      ref = parseImageReference(text);
    } catch {
      return undefined;
    }
    const db = this.options.db.db;
    const find = (name: string, kind: 'tag' | 'digest') => {
      const hit = db.prepare('SELECT image_id FROM image_names WHERE name = ? AND kind = ?').get(name, kind) as { image_id: string } | undefined;
      const row = hit ? this.row(hit.image_id) : undefined;
      return row ? { row, by: kind, name } : undefined;
    };
    if (ref.digest) {
      const byDigest = find(digestedName(ref, ref.digest), 'digest');
      if (byDigest) return byDigest;
      // A digest reference may name the image's config (its id).
      const byId = this.row(ref.digest);
      if (byId) return { row: byId, by: 'digest', name: digestedName(ref, ref.digest) };
      return undefined;
    }
    return find(taggedName(ref)!, 'tag');
  }

  resolve(reference: string): ImageRecord | undefined {
    const hit = this.lookup(reference);
    return hit ? this.recordOf(hit.row) : undefined;
  }

  list(filterReference?: string): ImageRecord[] {
    if (filterReference) {
      const one = this.resolve(filterReference);
      return one ? [one] : [];
    }
    const rows = this.options.db.db.prepare('SELECT * FROM images ORDER BY created_at, id').all() as ImageRow[];
    return rows.map((row) => this.recordOf(row));
  }

  status(reference: string): ImageStatusInfo | undefined {
    const hit = this.lookup(reference);
    if (!hit) return undefined;
    const image = this.recordOf(hit.row);
    const layers = this.layerRowsOf(hit.row.id);
    return {
      image,
      info: {
        id: image.id,
        repoTags: image.repoTags,
        repoDigests: image.repoDigests,
        manifestDigest: hit.row.manifest_digest,
        imageSpec: JSON.parse(hit.row.config_json) as unknown,
        layers: layers.map((l) => ({ diffId: l.diff_id, digest: l.blob_digest, size: l.compressed_size, unpackedSize: l.unpacked_size })),
        pinned: image.pinned,
      },
    };
  }

  private layerRowsOf(imageId: string): LayerRow[] {
    return this.options.db.db
      .prepare('SELECT l.* FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id WHERE il.image_id = ? ORDER BY il.position')
      .all(imageId) as LayerRow[];
  }

  /** The unpacked layer directories of an image, base first. */
  layerDirsOf(imageId: string): string[] {
    return this.layerRowsOf(imageId).map((l) => join(this.layersDir, l.dir_id, 'diff'));
  }

  forContainer(reference: string): ImageForContainer {
    const hit = this.lookup(reference);
    if (!hit) throw notFound(`image "${reference}" not found`);
    const expected = (this.options.db.db.prepare('SELECT COUNT(*) AS n FROM image_layers WHERE image_id = ?').get(hit.row.id) as { n: number }).n;
    const layerDirs = this.layerDirsOf(hit.row.id);
    if (layerDirs.length !== expected) throw failedPrecondition(`image ${hit.row.id} is missing layers on disk; pull it again`);
    return { image: this.recordOf(hit.row), layerDirs };
  }

  /** Keeps an image's layers on disk while `holder` (a container id) uses them, even after the image is removed. */
  holdLayers(holder: string, imageId: string): void {
    const db = this.options.db.db;
    this.options.db.transaction(() => {
      for (const row of db.prepare('SELECT diff_id FROM image_layers WHERE image_id = ?').all(imageId) as { diff_id: string }[]) {
        db.prepare('INSERT OR IGNORE INTO layer_holds (holder, diff_id) VALUES (?, ?)').run(holder, row.diff_id);
      }
    });
  }

  /** Lets go of what `holder` held; layers no image needs any more are removed. */
  async releaseLayers(holder: string): Promise<void> {
    this.options.db.db.prepare('DELETE FROM layer_holds WHERE holder = ?').run(holder);
    await this.collectGarbage();
  }

  // ---- pulling ----

  /** Pulls an image; concurrent pulls of the same reference share the work. Resolves with the image. */
  async pull(referenceText: string, credentials?: RegistryCredentials): Promise<ImageRecord> {
    const ref = parseImageReference(referenceText);
    const key = `${formatImageReference(ref)}|${credentials?.username ?? ''}|${credentials?.auth ?? ''}|${credentials?.registryToken ?? ''}|${credentials?.identityToken ?? ''}`;
    const running = this.pulls.get(key);
    if (running) {
      this.options.log.debug({ image: formatImageReference(ref) }, 'pull already in progress; waiting for it');
      return running;
    }
    const work = this.pullOnce(ref, credentials).finally(() => this.pulls.delete(key));
    this.pulls.set(key, work);
    return work;
  }

  private async pullOnce(ref: ImageReference, creds: RegistryCredentials | undefined): Promise<ImageRecord> {
    const name = formatImageReference(ref);
    const started = Date.now();
    const log = this.options.log;
    this.activePulls++;
    let bytes = 0;
    try {
      log.info({ image: name }, 'pulling image');
      const top = await this.client.fetchManifest(ref, ref.digest ?? ref.tag!, creds);
      const parsedTop = parseManifest(top.body, top.contentType);
      const keep: { digest: string; data: Buffer }[] = [{ digest: top.digest, data: top.body }];
      let manifest: ImageManifest;
      let endpoint: RegistryEndpoint = top.endpoint;
      if (parsedTop.kind === 'index') {
        const picked = pickPlatform(parsedTop, this.platform);
        if (!picked) throw noPlatformMatch(parsedTop, this.platform);
        const fetched = await this.client.fetchManifest(ref, picked.digest, creds);
        const parsed = parseManifest(fetched.body, fetched.contentType);
        if (parsed.kind !== 'manifest') throw invalidArgument(`${name}: the index entry for this platform is itself an index`);
        manifest = parsed;
        endpoint = fetched.endpoint;
        keep.push({ digest: fetched.digest, data: fetched.body });
      } else {
        manifest = parsedTop;
      }
      const configData = await this.client.fetchSmallBlob(ref, manifest.config, creds, endpoint);
      const config = parseImageConfig(configData);
      keep.push({ digest: manifest.config.digest, data: configData });
      const diffIds = config.rootfs.diff_ids;
      if (diffIds.length !== manifest.layers.length) {
        throw invalidArgument(`${name}: the manifest has ${manifest.layers.length} layers, the config lists ${diffIds.length} diff ids`);
      }
      this.workers.warm(diffIds.filter((diffId) => !this.layerRow(diffId)).length);
      for (const blob of keep) await this.writeBlob(blob.digest, blob.data);

      // Every layer settles before the pull answers, so a failed pull has no download of its own still writing.
      const settled = await Promise.allSettled(
        manifest.layers.map((descriptor, i) =>
          this.ensureLayer(ref, creds, endpoint, descriptor, diffIds[i], (n) => {
            bytes += n;
          }),
        ),
      );
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw failed.reason;
      const layerRows = settled.map((s) => (s as PromiseFulfilledResult<LayerRow>).value);
      const imageId = manifest.config.digest;
      const size = manifest.config.size + manifest.layers.reduce((sum, l) => sum + l.size, 0);
      this.record(ref, top.digest, imageId, size, configData, manifest, layerRows, keep);
      const seconds = (Date.now() - started) / 1000;
      this.options.metrics?.observeImagePull(seconds, bytes, 'ok');
      log.info(
        { image: name, id: imageId, layers: manifest.layers.length, downloadedBytes: bytes, seconds, mbPerSecond: Number((bytes / 1e6 / Math.max(seconds, 0.001)).toFixed(1)) },
        'pulled image',
      );
      return this.recordOf(this.row(imageId)!);
    } catch (err) {
      this.options.metrics?.observeImagePull((Date.now() - started) / 1000, bytes, 'error');
      log.warn({ image: name, err: describeError(err) }, 'pull failed');
      if (err instanceof BerthError) throw err;
      throw unavailable(`pulling ${name} failed: ${describeError(err)}`);
    } finally {
      this.activePulls--;
      if (this.activePulls === 0 && this.gcPending) {
        this.gcPending = false;
        await this.collectGarbage().catch((e: unknown) => log.warn({ err: describeError(e) }, 'image garbage collection failed'));
      }
    }
  }

  private async writeBlob(digest: string, data: Buffer): Promise<void> {
    const path = join(this.contentDir, digest.slice(7));
    if (existsSync(path)) return;
    const temp = join(this.contentTempDir, `${digest.slice(7)}-${randomBytes(6).toString('hex')}`);
    await fsp.writeFile(temp, data, { mode: 0o644 });
    await fsp.rename(temp, path);
  }

  private layerRow(diffId: string): LayerRow | undefined {
    return this.options.db.db.prepare('SELECT * FROM layers WHERE diff_id = ?').get(diffId) as LayerRow | undefined;
  }

  /** A short directory name for a layer: overlay's option string has to fit many of them. */
  private dirIdFor(diffId: string): string {
    const hex = diffId.slice(7);
    for (let length = 12; length <= hex.length; length += 4) {
      const candidate = hex.slice(0, length);
      const taken = this.options.db.db.prepare('SELECT diff_id FROM layers WHERE dir_id = ?').get(candidate) as { diff_id: string } | undefined;
      if ((!taken || taken.diff_id === diffId) && (!existsSync(join(this.layersDir, candidate)) || taken)) return candidate;
    }
    return `${hex}-${randomBytes(4).toString('hex')}`;
  }

  private async ensureLayer(
    ref: ImageReference,
    creds: RegistryCredentials | undefined,
    endpoint: RegistryEndpoint,
    descriptor: Descriptor,
    diffId: string,
    onBytes: (n: number) => void,
  ): Promise<LayerRow> {
    const present = this.layerRow(diffId);
    if (present && existsSync(join(this.layersDir, present.dir_id, 'diff'))) {
      return present;
    }
    const running = this.layerWork.get(diffId);
    if (running) return running;
    const work = this.downloads
      .run(() => this.fetchLayer(ref, creds, endpoint, descriptor, diffId, onBytes))
      .finally(() => this.layerWork.delete(diffId));
    this.layerWork.set(diffId, work);
    return work;
  }

  private async fetchLayer(
    ref: ImageReference,
    creds: RegistryCredentials | undefined,
    endpoint: RegistryEndpoint,
    descriptor: Descriptor,
    diffId: string,
    onBytes: (n: number) => void,
  ): Promise<LayerRow> {
    const log = this.options.log;
    const limits = { maxUnpackedBytes: this.options.config.image.max_layer_unpacked_bytes, maxCompressionRatio: this.options.config.image.max_compression_ratio };
    const attempts = 3;
    for (let attempt = 1; ; attempt++) {
      const started = Date.now();
      try {
        const blob = await this.client.openBlob(ref, descriptor, creds, endpoint);
        const layer = await downloadLayer({ body: blob.body, descriptor, expectedDiffId: diffId, layersDir: this.layersDir, contentTempDir: this.contentTempDir, limits, workers: this.workers, onBytes });
        const dirId = this.dirIdFor(diffId);
        const finalDir = join(this.layersDir, dirId);
        await removeQuietly(finalDir);
        await fsp.rename(layer.tempDir, finalDir);
        await fsp.rename(layer.tempBlob, join(this.contentDir, descriptor.digest.slice(7)));
        const row: LayerRow = {
          diff_id: diffId,
          dir_id: dirId,
          blob_digest: descriptor.digest,
          compressed_size: descriptor.size,
          unpacked_size: layer.fileBytes,
          entries: layer.entries,
        };
        this.options.db.db
          .prepare('INSERT OR REPLACE INTO layers (diff_id, dir_id, blob_digest, compressed_size, unpacked_size, entries, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
          .run(row.diff_id, row.dir_id, row.blob_digest, row.compressed_size, row.unpacked_size, row.entries, new Date().toISOString());
        const seconds = (Date.now() - started) / 1000;
        log.debug({ layer: descriptor.digest, dir: dirId, bytes: layer.compressedBytes, unpacked: layer.tarBytes, entries: layer.entries, seconds }, 'layer unpacked');
        return row;
      } catch (err) {
        // Only a broken transfer is worth another try; bad content or a limit stays bad.
        const retryable = !(err instanceof BerthError) || err.kind === 'Unavailable';
        if (!retryable || attempt >= attempts) {
          if (err instanceof BerthError) throw err;
          throw unavailable(`downloading layer ${descriptor.digest} failed: ${describeError(err)}`);
        }
        log.warn({ layer: descriptor.digest, attempt, err: describeError(err) }, 'layer download failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
      }
    }
  }

  private record(
    ref: ImageReference,
    topDigest: string,
    imageId: string,
    size: number,
    configData: Buffer,
    manifest: ImageManifest,
    layers: LayerRow[],
    blobs: { digest: string; data: Buffer }[],
  ): void {
    const db = this.options.db.db;
    this.options.db.transaction(() => {
      const exists = this.row(imageId);
      if (!exists) {
        db.prepare('INSERT INTO images (id, manifest_digest, size, config_json, pinned, annotations_json, created_at) VALUES (?, ?, ?, ?, 0, ?, ?)').run(
          imageId,
          topDigest,
          size,
          configData.toString('utf8'),
          JSON.stringify(manifest.annotations ?? {}),
          new Date().toISOString(),
        );
      }
      db.prepare('DELETE FROM image_layers WHERE image_id = ?').run(imageId);
      layers.forEach((layer, position) => db.prepare('INSERT INTO image_layers (image_id, position, diff_id) VALUES (?, ?, ?)').run(imageId, position, layer.diff_id));
      const blobRows = [...blobs.map((b) => ({ digest: b.digest, size: b.data.length })), ...layers.map((l) => ({ digest: l.blob_digest, size: l.compressed_size }))];
      for (const b of blobRows) db.prepare('INSERT OR IGNORE INTO image_blobs (image_id, digest, size) VALUES (?, ?, ?)').run(imageId, b.digest, b.size);
      const tag = taggedName(ref);
      // A tag names one image: pulling it again moves it to the new image.
      if (tag) db.prepare("INSERT INTO image_names (name, kind, image_id) VALUES (?, 'tag', ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id").run(tag, imageId);
      db.prepare("INSERT INTO image_names (name, kind, image_id) VALUES (?, 'digest', ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id").run(digestedName(ref, topDigest), imageId);
    });
  }

  // ---- removing ----

  /**
   * Removes by id, tag or digest. By tag, only that tag goes when the image has others;
   * otherwise the image and every name of it go. Succeeds when nothing matches.
   */
  async remove(reference: string): Promise<{ removed: boolean; imageId?: string }> {
    const hit = this.lookup(reference);
    if (!hit) return { removed: false };
    const db = this.options.db.db;
    const image = this.recordOf(hit.row);
    if (hit.by === 'tag' && image.repoTags.length > 1) {
      db.prepare('DELETE FROM image_names WHERE name = ?').run(hit.name);
      this.options.log.info({ image: image.id, tag: hit.name }, 'untagged image');
      return { removed: false, imageId: image.id };
    }
    db.prepare('DELETE FROM images WHERE id = ?').run(image.id);
    this.options.log.info({ image: image.id, tags: image.repoTags }, 'removed image');
    await this.collectGarbage();
    return { removed: true, imageId: image.id };
  }

  /** Removes layers and blobs no image and no holder needs. Deferred while pulls run (they may be about to use them). */
  async collectGarbage(): Promise<void> {
    if (this.activePulls > 0) {
      this.gcPending = true;
      return;
    }
    const db = this.options.db.db;
    const unused = db
      .prepare(
        `SELECT * FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)
           AND diff_id NOT IN (SELECT diff_id FROM layer_holds)`,
      )
      .all() as LayerRow[];
    for (const layer of unused) {
      db.prepare('DELETE FROM layers WHERE diff_id = ?').run(layer.diff_id);
      await removeQuietly(join(this.layersDir, layer.dir_id));
    }
    const needed = new Set<string>([
      ...(db.prepare('SELECT digest FROM image_blobs').all() as { digest: string }[]).map((r) => r.digest.slice(7)),
      ...(db.prepare('SELECT blob_digest FROM layers').all() as { blob_digest: string }[]).map((r) => r.blob_digest.slice(7)),
    ]);
    for (const name of await fsp.readdir(this.contentDir)) {
      if (!needed.has(name)) await fsp.rm(join(this.contentDir, name), { force: true });
    }
    if (unused.length > 0) this.options.log.info({ layers: unused.map((l) => l.dir_id) }, 'removed unused layers');
  }

  // ---- usage ----

  /** Bytes and inodes of the content store and unpacked layers. */
  imageFilesystemUsage(): FilesystemUsageInfo {
    const db = this.options.db.db;
    const layers = db.prepare('SELECT COALESCE(SUM(unpacked_size), 0) AS bytes, COALESCE(SUM(entries), 0) AS entries, COUNT(*) AS n FROM layers').get() as {
      bytes: number;
      entries: number;
      n: number;
    };
    let blobBytes = 0;
    let blobCount = 0;
    for (const name of readdirSync(this.contentDir)) {
      try {
        blobBytes += statSync(join(this.contentDir, name)).size;
        blobCount++;
      } catch {
        // removed meanwhile
      }
    }
    // Each layer has its own dir and diff dir besides its entries.
    return { mountpoint: this.options.config.root, usedBytes: layers.bytes + blobBytes, inodesUsed: layers.entries + layers.n * 2 + blobCount };
  }

  /** Bytes and inodes under a directory (container upper dirs), bounded in entries visited. */
  static async directoryUsage(dir: string, maxEntries = 1_000_000): Promise<FilesystemUsageInfo> {
    let usedBytes = 0;
    let inodesUsed = 0;
    const stack = [dir];
    const seen = new Set<number>();
    while (stack.length > 0 && inodesUsed < maxEntries) {
      const current = stack.pop()!;
      let entries;
      try {
        entries = await fsp.readdir(current, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const entry of entries) {
        const path = join(current, entry.name);
        try {
          const st = await fsp.lstat(path);
          if (seen.has(st.ino) && st.nlink > 1) continue;
          if (st.nlink > 1) seen.add(st.ino);
          inodesUsed++;
          usedBytes += st.blocks * 512;
          if (entry.isDirectory()) stack.push(path);
        } catch {
          // gone meanwhile
        }
      }
    }
    return { mountpoint: dir, usedBytes, inodesUsed };
  }
}

