// Images from an archive instead of a registry: a `docker save` tar
// (manifest.json with RepoTags, Config and Layers; old ones link repeated
// layers with symlinks) or an OCI image layout (index.json, blobs/sha256/…,
// names in the io.containerd.image.name or org.opencontainers.image.ref.name
// annotations). The archive is staged into a directory of berth's first (only
// directories, regular files and in-archive symlinks, every name checked), then
// read into the same manifest/config/layer descriptors a pull works with.
import { createHash } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { invalidArgument } from '../errors';
import { MediaType, parseManifest, pickPlatform, noPlatformMatch, type Descriptor, type ImageManifest, type Platform } from './image-manifest';
import { digestedName, parseImageReference, taggedName } from './image-reference';
import { TarReader } from './tar-reader';

/** Manifests, configs and index.json are small; anything larger is not one. */
const MAX_METADATA_BYTES = 4 * 1024 * 1024;
const MAX_ENTRIES = 100_000;

export interface ArchiveImage {
  /** Tagged and digested names ("docker.io/library/busybox:1.36", "…@sha256:…"); may be empty. */
  names: string[];
  manifestDigest: string;
  manifest: ImageManifest;
  configData: Buffer;
  /** Blobs met on the way (index, manifest, config) to keep in the content store. */
  blobs: { digest: string; data: Buffer }[];
  /** File holding a layer's blob, by the layer's digest. */
  layerFiles: Map<string, string>;
}

function normalizeName(raw: string): string {
  const name = posix.normalize(raw.replace(/^\.\/+/, '')).replace(/\/+$/, '');
  if (name === '.' || name === '') return '';
  if (posix.isAbsolute(name) || name === '..' || name.startsWith('../')) throw invalidArgument(`image archive: entry "${raw}" leaves the archive`);
  return name;
}

/** Writes the archive's files under dir; symlinks are remembered, not created, and resolved by lookups. */
export async function stageArchive(tar: AsyncIterable<Buffer>, dir: string): Promise<ArchiveFiles> {
  const reader = new TarReader(tar);
  const links = new Map<string, string>();
  let entries = 0;
  for (let entry = await reader.next(); entry; entry = await reader.next()) {
    if (++entries > MAX_ENTRIES) throw invalidArgument(`image archive: more than ${MAX_ENTRIES} entries`);
    const name = normalizeName(entry.name);
    if (!name) continue;
    const path = join(dir, name);
    if (entry.typeflag === '5') {
      await fsp.mkdir(path, { recursive: true });
    } else if (entry.typeflag === '0' || entry.typeflag === '\0' || entry.typeflag === '7' || entry.typeflag === '') {
      await fsp.mkdir(dirname(path), { recursive: true });
      // O_EXCL|O_NOFOLLOW: a name seen twice or a path through a link is refused, never followed.
      const file = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' || err.code === 'ELOOP' ? invalidArgument(`image archive: entry "${entry!.name}" appears twice`) : err;
      });
      try {
        for await (const piece of reader.data(entry)) await file.write(piece);
      } finally {
        await file.close();
      }
    } else if (entry.typeflag === '2' || entry.typeflag === '1') {
      // Symlinks are relative to their directory, hardlinks to the archive root.
      const target = entry.typeflag === '2' ? posix.join(posix.dirname(name), entry.linkname) : entry.linkname;
      links.set(name, normalizeName(target));
    }
  }
  return new ArchiveFiles(dir, links);
}

/** The staged archive: files read by archive name, through the archive's own links. */
export class ArchiveFiles {
  constructor(
    readonly dir: string,
    private readonly links: Map<string, string>,
  ) {}

  /** The staged path of an archive name, following in-archive links. */
  path(raw: string): string {
    let name = normalizeName(raw);
    for (let hops = 0; this.links.has(name); hops++) {
      if (hops > 16) throw invalidArgument(`image archive: "${raw}" is a loop of links`);
      name = this.links.get(name)!;
    }
    return join(this.dir, name);
  }

  async has(raw: string): Promise<boolean> {
    try {
      return (await fsp.lstat(this.path(raw))).isFile();
    } catch {
      return false;
    }
  }

  async readSmall(raw: string, what: string): Promise<Buffer> {
    const path = this.path(raw);
    let stat;
    try {
      stat = await fsp.lstat(path);
    } catch {
      throw invalidArgument(`image archive: ${what} "${raw}" is missing`);
    }
    if (!stat.isFile() || stat.size > MAX_METADATA_BYTES) throw invalidArgument(`image archive: ${what} "${raw}" is not a file of at most ${MAX_METADATA_BYTES} bytes`);
    return fsp.readFile(path);
  }

  /** sha256 digest and size of a staged file, read as a stream. */
  async digest(raw: string): Promise<{ digest: string; size: number; head: Buffer }> {
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    for await (const chunk of createReadStream(this.path(raw)) as AsyncIterable<Buffer>) {
      if (head.length < 8) head = Buffer.concat([head, chunk.subarray(0, 8 - head.length)]);
      hash.update(chunk);
      size += chunk.length;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size, head };
  }
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw invalidArgument(`image archive: ${what} is not JSON`);
  }
}

/** The image's names: a tag, and a digested name for the manifest berth records. */
function namesFor(reference: string, manifestDigest: string): string[] {
  const ref = parseImageReference(reference);
  const tagged = taggedName(ref);
  return [...(tagged ? [tagged] : []), digestedName(ref, manifestDigest)];
}

/** Docker save layers are plain tars, but newer daemons may compress them: the bytes say which. */
function layerMediaType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'application/vnd.docker.image.rootfs.diff.tar.gzip';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'application/vnd.oci.image.layer.v1.tar+zstd';
  return 'application/vnd.docker.image.rootfs.diff.tar';
}

async function dockerSaveImages(files: ArchiveFiles): Promise<ArchiveImage[]> {
  const list = parseJson(await files.readSmall('manifest.json', 'manifest.json'), 'manifest.json');
  if (!Array.isArray(list)) throw invalidArgument('image archive: manifest.json is not a list');
  const out: ArchiveImage[] = [];
  for (const [i, item] of list.entries()) {
    const entry = item as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (typeof entry.Config !== 'string' || !Array.isArray(entry.Layers) || !entry.Layers.every((l) => typeof l === 'string')) {
      throw invalidArgument(`image archive: manifest.json[${i}] needs Config and Layers`);
    }
    const configData = await files.readSmall(entry.Config, 'image config');
    const layerFiles = new Map<string, string>();
    const layers: Descriptor[] = [];
    for (const layer of entry.Layers as string[]) {
      const { digest, size, head } = await files.digest(layer);
      layers.push({ mediaType: layerMediaType(head), digest, size });
      layerFiles.set(digest, files.path(layer));
    }
    // A docker save archive has no registry manifest: berth writes the one a registry would serve.
    const manifestJson = {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, digest: sha256(configData), size: configData.length },
      layers,
    };
    const manifestData = Buffer.from(JSON.stringify(manifestJson));
    const manifestDigest = sha256(manifestData);
    const manifest = parseManifest(manifestData, MediaType.dockerManifest) as ImageManifest;
    const tags = Array.isArray(entry.RepoTags) ? entry.RepoTags.filter((t): t is string => typeof t === 'string') : [];
    out.push({
      names: tags.flatMap((tag) => namesFor(tag, manifestDigest)),
      manifestDigest,
      manifest,
      configData,
      blobs: [{ digest: manifestDigest, data: manifestData }, { digest: manifest.config.digest, data: configData }],
      layerFiles,
    });
  }
  return out;
}

function blobName(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (algorithm !== 'sha256' || !/^[a-f0-9]{64}$/.test(hex ?? '')) throw invalidArgument(`image archive: unsupported digest "${digest}"`);
  return `blobs/sha256/${hex}`;
}

async function verifiedBlob(files: ArchiveFiles, descriptor: Descriptor, what: string): Promise<Buffer> {
  const data = await files.readSmall(blobName(descriptor.digest), what);
  if (sha256(data) !== descriptor.digest) throw invalidArgument(`image archive: ${what} ${descriptor.digest} does not match its digest`);
  return data;
}

/** A name from an OCI layout's annotations; a bare tag in ref.name names no repository, so it names nothing. */
function layoutName(annotations: Record<string, string> | undefined): string | undefined {
  const full = annotations?.['io.containerd.image.name'];
  if (full) return full;
  const refName = annotations?.['org.opencontainers.image.ref.name'];
  return refName && /[/:@]/.test(refName) ? refName : undefined;
}

async function ociLayoutImages(files: ArchiveFiles, platform: Platform): Promise<ArchiveImage[]> {
  const indexData = await files.readSmall('index.json', 'index.json');
  const index = parseManifest(indexData, MediaType.ociIndex);
  if (index.kind !== 'index') throw invalidArgument('image archive: index.json is not an image index');
  const out: ArchiveImage[] = [];
  for (const top of index.manifests) {
    const blobs: { digest: string; data: Buffer }[] = [];
    let data = await verifiedBlob(files, top, 'manifest');
    blobs.push({ digest: top.digest, data });
    let parsed = parseManifest(data, top.mediaType);
    if (parsed.kind === 'index') {
      const picked = pickPlatform(parsed, platform);
      if (!picked) throw noPlatformMatch(parsed, platform);
      data = await verifiedBlob(files, picked, 'manifest');
      blobs.push({ digest: picked.digest, data });
      parsed = parseManifest(data, picked.mediaType);
      if (parsed.kind !== 'manifest') throw invalidArgument('image archive: the index entry for this platform is itself an index');
    }
    const configData = await verifiedBlob(files, parsed.config, 'image config');
    blobs.push({ digest: parsed.config.digest, data: configData });
    const layerFiles = new Map(parsed.layers.map((layer) => [layer.digest, files.path(blobName(layer.digest))] as const));
    const name = layoutName(top.annotations);
    out.push({ names: name ? namesFor(name, top.digest) : [], manifestDigest: top.digest, manifest: parsed, configData, blobs, layerFiles });
  }
  return out;
}

/**
 * Every image in the staged archive. An OCI layout's index.json is preferred: it keeps the
 * registry's manifests and digests (ctr export and Docker 25+ write it beside manifest.json);
 * docker save's manifest.json serves older archives, and layouts whose index names nothing.
 */
export async function readArchiveImages(files: ArchiveFiles, platform: Platform): Promise<ArchiveImage[]> {
  const hasDockerManifest = await files.has('manifest.json');
  if (await files.has('index.json')) {
    const images = await ociLayoutImages(files, platform);
    if (!hasDockerManifest || images.some((image) => image.names.length > 0)) return images;
  }
  if (hasDockerManifest) return dockerSaveImages(files);
  throw invalidArgument('image archive: neither a docker save archive (manifest.json) nor an OCI image layout (index.json)');
}
