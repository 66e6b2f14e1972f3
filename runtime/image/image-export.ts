// `berthd images export`: an image from berth's store as an OCI image layout
// in a tar stream, with a docker-compatible manifest.json beside index.json
// (as ctr export and Docker 25+ write it), so `berthd images import`, `ctr
// images import` and `docker load` all take it. The layout holds this
// platform's manifest, its config and its compressed layer blobs exactly as
// pulled: digests and the image's repo digests stay what the registry served.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { failedPrecondition } from '../errors';
import type { ContentBlobs } from './content-blobs';
import { MediaType, parseManifest, type Descriptor, type ImageManifest } from './image-manifest';
import type { ImageRow, ImageRows } from './image-rows';

const BLOCK = 512;

interface TarFile {
  name: string;
  size: number;
  open(): Readable | Buffer;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** A ustar header for a regular file (names here are short: blobs/sha256/<64 hex> at most). */
function header(name: string, size: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const block = Buffer.alloc(BLOCK, 0);
  block.write(name, 0, 'utf8');
  block.write(octal(0o644, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(size, 12), 124, 'ascii');
  block.write(octal(0, 12), 136, 'ascii');
  block.write('        ', 148, 'ascii');
  block.write('0', 156, 'ascii');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7), 148, 'ascii');
  return block;
}

/** The files as a tar stream, each file's bytes checked against its announced size. */
async function* tarStream(files: TarFile[]): AsyncGenerator<Buffer> {
  for (const file of files) {
    yield header(file.name, file.size);
    const body = file.open();
    let written = 0;
    for await (const chunk of (Buffer.isBuffer(body) ? [body] : body) as AsyncIterable<Buffer>) {
      written += chunk.length;
      if (written > file.size) throw new Error(`${file.name} grew while it was exported`);
      yield chunk;
    }
    if (written !== file.size) throw new Error(`${file.name} is ${written} bytes, ${file.size} expected`);
    const pad = (BLOCK - (file.size % BLOCK)) % BLOCK;
    if (pad) yield Buffer.alloc(pad, 0);
  }
  yield Buffer.alloc(BLOCK * 2, 0);
}

function blobName(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

export class ImageExporter {
  constructor(
    private readonly rows: ImageRows,
    private readonly blobs: ContentBlobs,
  ) {}

  private async readBlob(digest: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.blobs.pathOf(digest));
    } catch {
      throw failedPrecondition(`blob ${digest} of the image is not in berth's store; pull the image again to export it`);
    }
  }

  /** This platform's manifest: the image's own, or the entry of its index whose blob berth kept. */
  private async platformManifest(row: ImageRow): Promise<{ digest: string; data: Buffer; manifest: ImageManifest }> {
    const top = await this.readBlob(row.manifestDigest);
    const parsed = parseManifest(top, MediaType.ociManifest);
    if (parsed.kind === 'manifest') return { digest: row.manifestDigest, data: top, manifest: parsed };
    for (const entry of parsed.manifests) {
      const data = await this.readBlob(entry.digest).catch(() => undefined);
      if (!data) continue;
      const manifest = parseManifest(data, entry.mediaType);
      if (manifest.kind === 'manifest' && manifest.config.digest === row.id) return { digest: entry.digest, data, manifest };
    }
    throw failedPrecondition(`image ${row.id}: none of its index's manifests is in berth's store`);
  }

  /** The blob's size, or -1 when berth does not hold it. */
  private async blobSize(digest: string): Promise<number> {
    return fsp.stat(this.blobs.pathOf(digest)).then((s) => s.size, () => -1);
  }

  /**
   * The layers as berth holds them. A layer first unpacked from another image may be kept in
   * another compression than this manifest names (same diff id, other blob): the blob berth has
   * is exported instead, and the manifest rewritten to name it, so it gets a digest of its own.
   */
  private async heldLayers(row: ImageRow, manifest: ImageManifest): Promise<{ layers: Descriptor[]; rewritten: boolean }> {
    const diffIds = (JSON.parse(row.configJson) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
    const layers: Descriptor[] = [];
    let rewritten = false;
    for (const [i, layer] of manifest.layers.entries()) {
      if ((await this.blobSize(layer.digest)) === layer.size) {
        layers.push(layer);
        continue;
      }
      const held = diffIds[i] ? this.rows.layer(diffIds[i]) : undefined;
      const size = held ? await this.blobSize(held.blobDigest) : -1;
      if (!held || size < 0) throw failedPrecondition(`layer blob ${layer.digest} of image ${row.id} is not in berth's store; pull the image again to export it`);
      const head = Buffer.alloc(4);
      const fd = await fsp.open(this.blobs.pathOf(held.blobDigest), 'r');
      await fd.read(head, 0, 4, 0).finally(() => fd.close());
      const compression = head[0] === 0x1f && head[1] === 0x8b ? '+gzip' : head.readUInt32LE(0) === 0xfd2fb528 ? '+zstd' : '';
      layers.push({ mediaType: `application/vnd.oci.image.layer.v1.tar${compression}`, digest: held.blobDigest, size });
      rewritten = true;
    }
    return { layers, rewritten };
  }

  /** The image as a tar stream; names are the image's tags. Throws before streaming when a blob is missing. */
  async export(row: ImageRow, tags: string[]): Promise<AsyncIterable<Buffer>> {
    const platform = await this.platformManifest(row);
    let { digest, data, manifest } = platform;
    const config = await this.readBlob(manifest.config.digest);
    const held = await this.heldLayers(row, manifest);
    if (held.rewritten) {
      const json = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      data = Buffer.from(JSON.stringify({ ...json, mediaType: MediaType.ociManifest, config: { ...manifest.config, mediaType: MediaType.ociConfig }, layers: held.layers }));
      digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      manifest = { ...manifest, mediaType: MediaType.ociManifest, layers: held.layers };
    }
    const layers: TarFile[] = [];
    const seen = new Set<string>([digest, manifest.config.digest]);
    for (const layer of manifest.layers) {
      if (seen.has(layer.digest)) continue;
      seen.add(layer.digest);
      const path = this.blobs.pathOf(layer.digest);
      layers.push({ name: blobName(layer.digest), size: layer.size, open: () => createReadStream(path) });
    }
    const mediaType = manifest.mediaType || MediaType.ociManifest;
    const descriptors = (tags.length ? tags : ['']).map((tag) => ({
      mediaType,
      digest,
      size: data.length,
      ...(tag ? { annotations: { 'io.containerd.image.name': tag, 'org.opencontainers.image.ref.name': tag.slice(tag.lastIndexOf(':') + 1) } } : {}),
    }));
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: descriptors }));
    const dockerManifest = Buffer.from(JSON.stringify([{ Config: blobName(manifest.config.digest), RepoTags: tags, Layers: manifest.layers.map((l) => blobName(l.digest)) }]));
    const small = (name: string, body: Buffer): TarFile => ({ name, size: body.length, open: () => body });
    return tarStream([
      small('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }))),
      small(blobName(digest), data),
      small(blobName(manifest.config.digest), config),
      ...layers,
      small('index.json', index),
      small('manifest.json', dockerManifest),
    ]);
  }
}
