// Images, their names, their layers and the layers containers hold, as SQLite
// rows. The tables are this owner's ("images") and so are their migrations;
// every statement is prepared once, here.
import type BetterSqlite3 from 'better-sqlite3';
import type { BerthDatabase } from '../store/database';

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
  {
    owner: 'images',
    version: 2,
    // Images mounted as volumes (CRI Mount.image): RemoveImage refuses them while a container uses them.
    sql: `CREATE TABLE image_volume_uses (
        holder TEXT NOT NULL,
        image_id TEXT NOT NULL,
        PRIMARY KEY (holder, image_id)
      );`,
  },
];

export type ImageNameKind = 'tag' | 'digest';

export interface ImageRow {
  id: string;
  manifestDigest: string;
  /** Bytes of the image's blobs (compressed layers + config). */
  size: number;
  configJson: string;
  pinned: boolean;
  annotationsJson: string;
}

/** An unpacked layer: its sizes are measured while it is unpacked, so usage never needs a walk. */
export interface LayerRow {
  diffId: string;
  /** The directory under layers/ (short: overlay's option string has to fit many). */
  dirId: string;
  blobDigest: string;
  compressedSize: number;
  /** Logical bytes of its regular files. */
  unpackedSize: number;
  /** Inodes it created. */
  entries: number;
}

export interface NewImage {
  id: string;
  manifestDigest: string;
  size: number;
  configJson: string;
  annotations: Record<string, string>;
  /** Its layers' diff ids, base first. */
  diffIds: string[];
  /** Every blob the image needs besides its layers' (manifests, config). */
  blobs: { digest: string; size: number }[];
  /** Names pointing at the image; each moves to it from any image it named before. */
  names: { name: string; kind: ImageNameKind }[];
}

export interface LayerTotals {
  layers: number;
  unpackedBytes: number;
  entries: number;
}

const IMAGE_COLUMNS = `id, manifest_digest AS manifestDigest, size, config_json AS configJson, pinned, annotations_json AS annotationsJson`;
const LAYER_COLUMNS = `diff_id AS diffId, dir_id AS dirId, blob_digest AS blobDigest, compressed_size AS compressedSize,
  unpacked_size AS unpackedSize, entries`;

type Statement = BetterSqlite3.Statement<unknown[]>;
type RawImageRow = Omit<ImageRow, 'pinned'> & { pinned: number };

const imageRowOf = (raw: RawImageRow | undefined): ImageRow | undefined => (raw ? { ...raw, pinned: raw.pinned === 1 } : undefined);

export class ImageRows {
  /** Bumped by every write to images or their names: what was read from them before is stale once it moves. */
  generation = 0;
  private readonly statements: Record<
    | 'image' | 'imagesWithIdPrefix' | 'allImages' | 'imageIdByName' | 'namesOf' | 'insertImage' | 'deleteImage'
    | 'deleteName' | 'upsertName' | 'layersOf' | 'layerCountOf' | 'clearImageLayers' | 'insertImageLayer' | 'insertBlob'
    | 'layer' | 'allLayers' | 'dirIdOwner' | 'putLayer' | 'deleteLayer' | 'unusedLayers' | 'neededBlobs'
    | 'layerTotals' | 'hold' | 'release' | 'useAsVolume' | 'releaseVolumeUses' | 'volumeUsers',
    Statement
  >;

  constructor(private readonly database: BerthDatabase) {
    database.migrate(MIGRATIONS);
    const db = database.db;
    this.statements = {
      image: db.prepare(`SELECT ${IMAGE_COLUMNS} FROM images WHERE id = ?`),
      imagesWithIdPrefix: db.prepare(`SELECT ${IMAGE_COLUMNS} FROM images WHERE id LIKE ? LIMIT 2`),
      allImages: db.prepare(`SELECT ${IMAGE_COLUMNS} FROM images ORDER BY created_at, id`),
      imageIdByName: db.prepare('SELECT image_id FROM image_names WHERE name = ? AND kind = ?').pluck(),
      namesOf: db.prepare('SELECT name, kind FROM image_names WHERE image_id = ? ORDER BY name'),
      insertImage: db.prepare(
        `INSERT OR IGNORE INTO images (id, manifest_digest, size, config_json, pinned, annotations_json, created_at)
         VALUES (?, ?, ?, ?, 0, ?, ?)`,
      ),
      deleteImage: db.prepare('DELETE FROM images WHERE id = ?'),
      deleteName: db.prepare('DELETE FROM image_names WHERE name = ?'),
      upsertName: db.prepare(
        'INSERT INTO image_names (name, kind, image_id) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id',
      ),
      layersOf: db.prepare(
        `SELECT ${LAYER_COLUMNS} FROM layers JOIN image_layers il USING (diff_id) WHERE il.image_id = ? ORDER BY il.position`,
      ),
      layerCountOf: db.prepare('SELECT COUNT(*) FROM image_layers WHERE image_id = ?').pluck(),
      clearImageLayers: db.prepare('DELETE FROM image_layers WHERE image_id = ?'),
      insertImageLayer: db.prepare('INSERT INTO image_layers (image_id, position, diff_id) VALUES (?, ?, ?)'),
      insertBlob: db.prepare('INSERT OR IGNORE INTO image_blobs (image_id, digest, size) VALUES (?, ?, ?)'),
      layer: db.prepare(`SELECT ${LAYER_COLUMNS} FROM layers WHERE diff_id = ?`),
      allLayers: db.prepare(`SELECT ${LAYER_COLUMNS} FROM layers`),
      dirIdOwner: db.prepare('SELECT diff_id FROM layers WHERE dir_id = ?').pluck(),
      putLayer: db.prepare(
        `INSERT OR REPLACE INTO layers (diff_id, dir_id, blob_digest, compressed_size, unpacked_size, entries, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      deleteLayer: db.prepare('DELETE FROM layers WHERE diff_id = ?'),
      unusedLayers: db.prepare(
        `SELECT ${LAYER_COLUMNS} FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)
           AND diff_id NOT IN (SELECT diff_id FROM layer_holds)`,
      ),
      neededBlobs: db.prepare('SELECT digest FROM image_blobs UNION SELECT blob_digest FROM layers').pluck(),
      layerTotals: db.prepare(
        'SELECT COUNT(*) AS layers, COALESCE(SUM(unpacked_size), 0) AS unpackedBytes, COALESCE(SUM(entries), 0) AS entries FROM layers',
      ),
      hold: db.prepare('INSERT OR IGNORE INTO layer_holds (holder, diff_id) SELECT ?, diff_id FROM image_layers WHERE image_id = ?'),
      release: db.prepare('DELETE FROM layer_holds WHERE holder = ?'),
      useAsVolume: db.prepare('INSERT OR IGNORE INTO image_volume_uses (holder, image_id) VALUES (?, ?)'),
      releaseVolumeUses: db.prepare('DELETE FROM image_volume_uses WHERE holder = ?'),
      volumeUsers: db.prepare('SELECT holder FROM image_volume_uses WHERE image_id = ? ORDER BY holder'),
    };
  }

  // ---- images and their names ----

  image(id: string): ImageRow | undefined {
    return imageRowOf(this.statements.image.get(id) as RawImageRow | undefined);
  }

  /** At most two images whose id starts with `idPrefix` ("sha256:ab…"): enough to tell unique from ambiguous. */
  imagesWithIdPrefix(idPrefix: string): ImageRow[] {
    return (this.statements.imagesWithIdPrefix.all(`${idPrefix}%`) as RawImageRow[]).map((raw) => imageRowOf(raw)!);
  }

  /** Every image, oldest first. */
  allImages(): ImageRow[] {
    return (this.statements.allImages.all() as RawImageRow[]).map((raw) => imageRowOf(raw)!);
  }

  imageIdByName(name: string, kind: ImageNameKind): string | undefined {
    return this.statements.imageIdByName.get(name, kind) as string | undefined;
  }

  namesOf(imageId: string): { name: string; kind: ImageNameKind }[] {
    return this.statements.namesOf.all(imageId) as { name: string; kind: ImageNameKind }[];
  }

  /** Records a pulled image (kept as it was when known already), its layers, blobs and names, in one transaction. */
  putImage(image: NewImage): void {
    const s = this.statements;
    this.generation++;
    this.database.transaction(() => {
      s.insertImage.run(image.id, image.manifestDigest, image.size, image.configJson, JSON.stringify(image.annotations), new Date().toISOString());
      s.clearImageLayers.run(image.id);
      image.diffIds.forEach((diffId, position) => s.insertImageLayer.run(image.id, position, diffId));
      for (const blob of image.blobs) s.insertBlob.run(image.id, blob.digest, blob.size);
      for (const { name, kind } of image.names) s.upsertName.run(name, kind, image.id);
    });
  }

  /** Removes an image with its names and layer list (its layers stay until collected). */
  deleteImage(id: string): void {
    this.generation++;
    this.statements.deleteImage.run(id);
  }

  deleteName(name: string): void {
    this.generation++;
    this.statements.deleteName.run(name);
  }

  // ---- layers ----

  /** The image's layers that are recorded as unpacked, base first. */
  layersOf(imageId: string): LayerRow[] {
    return this.statements.layersOf.all(imageId) as LayerRow[];
  }

  /** How many layers the image lists, unpacked or not. */
  layerCountOf(imageId: string): number {
    return this.statements.layerCountOf.get(imageId) as number;
  }

  layer(diffId: string): LayerRow | undefined {
    return this.statements.layer.get(diffId) as LayerRow | undefined;
  }

  allLayers(): LayerRow[] {
    return this.statements.allLayers.all() as LayerRow[];
  }

  /** The diff id of the layer unpacked in directory `dirId`, if any. */
  dirIdOwner(dirId: string): string | undefined {
    return this.statements.dirIdOwner.get(dirId) as string | undefined;
  }

  putLayer(layer: LayerRow): void {
    this.statements.putLayer.run(
      layer.diffId, layer.dirId, layer.blobDigest, layer.compressedSize, layer.unpackedSize, layer.entries, new Date().toISOString(),
    );
  }

  deleteLayer(diffId: string): void {
    this.statements.deleteLayer.run(diffId);
  }

  /** Layers no image lists and no holder holds. */
  unusedLayers(): LayerRow[] {
    return this.statements.unusedLayers.all() as LayerRow[];
  }

  /** Digests of every blob an image or an unpacked layer still needs. */
  neededBlobs(): Set<string> {
    return new Set(this.statements.neededBlobs.all() as string[]);
  }

  /** Sizes of every unpacked layer, summed from what was measured when each was unpacked. */
  layerTotals(): LayerTotals {
    return this.statements.layerTotals.get() as LayerTotals;
  }

  // ---- holds ----

  /** Records that `holder` (a container id) uses every layer of the image. */
  hold(holder: string, imageId: string): void {
    this.statements.hold.run(holder, imageId);
  }

  /** Records that `holder` mounts the image as a volume (and holds its layers). */
  useAsVolume(holder: string, imageId: string): void {
    this.database.transaction(() => {
      this.statements.hold.run(holder, imageId);
      this.statements.useAsVolume.run(holder, imageId);
    });
  }

  /** Containers that mount the image as a volume. */
  volumeUsers(imageId: string): string[] {
    return (this.statements.volumeUsers.all(imageId) as { holder: string }[]).map((r) => r.holder);
  }

  /** Everything `holder` held: layers, and images used as volumes. */
  release(holder: string): void {
    this.database.transaction(() => {
      this.statements.release.run(holder);
      this.statements.releaseVolumeUses.run(holder);
    });
  }
}
