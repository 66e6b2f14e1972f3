// `berthd images export`: images out of berth's store as one OCI image layout
// tar (oci-layout, index.json, blobs/sha256/…), with a docker-compatible
// manifest.json beside it so `docker load` takes it too. index.json points at
// what berth recorded for the image (an index keeps its digest, so the names'
// digests survive a round trip; only this platform's blobs go in, as
// `ctr export --platform` does), and each name is an entry annotated with
// io.containerd.image.name and org.opencontainers.image.ref.name, which is
// what `berthd images import`, containerd and Docker read back. A plan is made
// first (every blob checked present), so a bad request fails before a byte is
// written.
import { createHash } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { failedPrecondition, internal } from '../errors';
import { tarEnd, tarHeader, tarPadding } from './archive-writer';
import type { ContentBlobs } from './content-blobs';
import { MAX_MANIFEST_BYTES, MediaType, parseImageConfig, parseManifest, type Descriptor, type ImageManifest } from './image-manifest';
import { parseImageReference } from './image-reference';
import type { ImageRow, ImageRows } from './image-rows';
import type { LayerGc } from './layer-gc';

/** One image to export, with the tagged names it is exported under (none: by id only). */
export interface ExportRequest {
  row: ImageRow;
  names: string[];
}

interface PlannedBlob {
  digest: string;
  size: number;
  /** Written from memory (a manifest berth composed, a config kept only in its row); else from the content store. */
  data?: Buffer;
}

export interface ExportPlan {
  blobs: PlannedBlob[];
  index: Buffer;
  dockerManifest: Buffer;
  /** What goes out, for the log and the caller. */
  images: { id: string; digest: string; names: string[] }[];
}

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const blobPath = (digest: string): string => `blobs/sha256/${digest.slice('sha256:'.length)}`;

export class ImageExporter {
  constructor(private readonly o: { rows: ImageRows; blobs: ContentBlobs; gc: LayerGc }) {}

  /** Checks every image can be exported whole and lays out the archive; throws before anything is written. */
  async plan(requests: readonly ExportRequest[]): Promise<ExportPlan> {
    const blobs = new Map<string, PlannedBlob>();
    const add = (blob: PlannedBlob): void => {
      if (!blobs.has(blob.digest)) blobs.set(blob.digest, blob);
    };
    const entries: Descriptor[] = [];
    const docker: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
    const images: ExportPlan['images'] = [];
    for (const { row, names } of requests) {
      const { top, manifest, manifestBlob } = await this.manifestOf(row);
      if (top.digest !== manifestBlob.digest) add(await this.storedBlob(top.digest));
      add(manifestBlob);
      add(await this.configBlob(row));
      for (const layer of manifest.layers) add({ digest: layer.digest, size: layer.size });
      const config = parseImageConfig(Buffer.from(row.configJson));
      const platform = top.digest === manifestBlob.digest && config.os && config.architecture
        ? { platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) } }
        : {};
      if (names.length === 0) entries.push({ mediaType: top.mediaType, digest: top.digest, size: top.size, ...platform });
      for (const name of names) {
        const tag = parseImageReference(name).tag ?? 'latest';
        entries.push({
          mediaType: top.mediaType, digest: top.digest, size: top.size, ...platform,
          annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag },
        });
      }
      docker.push({ Config: blobPath(row.id), RepoTags: names, Layers: manifest.layers.map((l) => blobPath(l.digest)) });
      images.push({ id: row.id, digest: top.digest, names });
    }
    return {
      blobs: [...blobs.values()],
      index: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries })),
      dockerManifest: Buffer.from(JSON.stringify(docker)),
      images,
    };
  }

  /** Streams the archive into `out`; layer collection waits meanwhile, so no blob goes away mid-export. */
  write(plan: ExportPlan, out: Writable): Promise<void> {
    return this.o.gc.whilePulling(() => pipeline(Readable.from(this.archive(plan)), out));
  }

  private async *archive(plan: ExportPlan): AsyncGenerator<Buffer> {
    const small = function* (name: string, data: Buffer): Generator<Buffer> {
      yield tarHeader(name, 'file', data.length);
      yield data;
      yield tarPadding(data.length);
    };
    yield* small('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    yield tarHeader('blobs/', 'dir');
    yield tarHeader('blobs/sha256/', 'dir');
    for (const blob of plan.blobs) {
      if (blob.data) {
        yield* small(blobPath(blob.digest), blob.data);
        continue;
      }
      yield tarHeader(blobPath(blob.digest), 'file', blob.size);
      let written = 0;
      // berth's own store, but a file replaced by hand is still not followed.
      const file = await fsp.open(this.o.blobs.pathOf(blob.digest), constants.O_RDONLY | constants.O_NOFOLLOW);
      for await (const chunk of file.createReadStream() as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > blob.size) throw internal(`blob ${blob.digest} in the content store is larger than the ${blob.size} bytes recorded`);
        yield chunk;
      }
      if (written !== blob.size) throw internal(`blob ${blob.digest} in the content store is ${written} bytes, ${blob.size} recorded`);
      yield tarPadding(blob.size);
    }
    yield* small('index.json', plan.index);
    yield* small('manifest.json', plan.dockerManifest);
    yield tarEnd();
  }

  /** A blob of the content store that must be there, with its size. */
  private async storedBlob(digest: string): Promise<PlannedBlob> {
    try {
      return { digest, size: (await fsp.stat(this.o.blobs.pathOf(digest))).size };
    } catch {
      throw failedPrecondition(`blob ${digest} is missing from the content store; pull the image again`);
    }
  }

  private async readStored(digest: string): Promise<Buffer | undefined> {
    try {
      const path = this.o.blobs.pathOf(digest);
      if ((await fsp.stat(path)).size > MAX_MANIFEST_BYTES) return undefined;
      const data = await fsp.readFile(path);
      return sha256(data) === digest ? data : undefined;
    } catch {
      return undefined;
    }
  }

  private async configBlob(row: ImageRow): Promise<PlannedBlob> {
    const stored = await this.readStored(row.id);
    if (stored) return { digest: row.id, size: stored.length };
    const data = Buffer.from(row.configJson);
    if (sha256(data) !== row.id) throw failedPrecondition(`the config of image ${row.id} is missing from the content store; pull the image again`);
    return { digest: row.id, size: data.length, data };
  }

  /**
   * The recorded top (manifest or index) and this image's manifest under it, as stored. When a layer's
   * blob is not the one the manifest names (the layer came first with another image's compression), a
   * manifest of the blobs berth has is composed instead.
   */
  private async manifestOf(row: ImageRow): Promise<{ top: Descriptor; manifest: ImageManifest; manifestBlob: PlannedBlob }> {
    const topData = await this.readStored(row.manifestDigest);
    if (topData) {
      const parsed = parseManifest(topData, MediaType.ociManifest);
      const top: Descriptor = { mediaType: parsed.mediaType, digest: row.manifestDigest, size: topData.length };
      let found: { manifest: ImageManifest; blob: PlannedBlob } | undefined;
      if (parsed.kind === 'manifest') found = { manifest: parsed, blob: { digest: row.manifestDigest, size: topData.length } };
      else {
        for (const entry of parsed.manifests) {
          const data = await this.readStored(entry.digest);
          const child = data ? parseManifest(data, entry.mediaType) : undefined;
          if (child?.kind === 'manifest' && child.config.digest === row.id) found = { manifest: child, blob: { digest: entry.digest, size: data!.length } };
        }
      }
      if (found && found.manifest.config.digest === row.id && (await this.allPresent(found.manifest.layers))) {
        return { top, manifest: found.manifest, manifestBlob: found.blob };
      }
    }
    return this.composedManifest(row);
  }

  private async allPresent(layers: readonly Descriptor[]): Promise<boolean> {
    for (const layer of layers) {
      try {
        if ((await fsp.stat(this.o.blobs.pathOf(layer.digest))).size !== layer.size) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  private async composedManifest(row: ImageRow): Promise<{ top: Descriptor; manifest: ImageManifest; manifestBlob: PlannedBlob }> {
    const layerRows = this.o.rows.layersOf(row.id);
    if (layerRows.length !== this.o.rows.layerCountOf(row.id)) throw failedPrecondition(`image ${row.id} is missing layers; pull it again`);
    const layers: Descriptor[] = [];
    for (const layer of layerRows) {
      const blob = await this.storedBlob(layer.blobDigest);
      layers.push({ mediaType: await this.layerMediaType(layer.blobDigest), digest: layer.blobDigest, size: blob.size });
    }
    const config = await this.configBlob(row);
    const body = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: row.id, size: config.size },
      layers,
    };
    const data = Buffer.from(JSON.stringify(body));
    const digest = sha256(data);
    const manifest = parseManifest(data, MediaType.ociManifest) as ImageManifest;
    return { top: { mediaType: MediaType.ociManifest, digest, size: data.length }, manifest, manifestBlob: { digest, size: data.length, data } };
  }

  /** A stored layer blob's media type, from its first bytes. */
  private async layerMediaType(digest: string): Promise<string> {
    const file = await fsp.open(this.o.blobs.pathOf(digest), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const head = Buffer.alloc(4);
      await file.read(head, 0, 4, 0);
      if (head[0] === 0x1f && head[1] === 0x8b) return 'application/vnd.oci.image.layer.v1.tar+gzip';
      if (head.readUInt32LE(0) === 0xfd2fb528) return 'application/vnd.oci.image.layer.v1.tar+zstd';
      return 'application/vnd.oci.image.layer.v1.tar';
    } finally {
      await file.close();
    }
  }
}
