// Builds OCI / Docker schema 2 images in memory for tests (layers from tar
// entries, gzip / zstd / uncompressed; configs; manifests; multi-platform
// indexes) and pushes them to a registry through the distribution API.
//
//   const image = await pushBusyboxImage(registry, 'test/busybox:latest');
//   // image.reference === '127.0.0.1:<port>/test/busybox:latest', runnable: sh, ls, cat, sleep, ...
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { TestRegistry } from './registry';
import { writeTar, type TarEntry } from './tar-writer';

export type LayerCompression = 'gzip' | 'zstd' | 'none';
export type ManifestFormat = 'oci' | 'docker';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  data: Buffer;
}

export interface BuiltLayer extends Blob {
  /** Digest of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  tarSize: number;
}

export function compress(data: Buffer, compression: LayerCompression): Buffer {
  if (compression === 'none') return data;
  if (compression === 'gzip') return gzipSync(data);
  const result = spawnSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr.toString()}`);
  return result.stdout;
}

/** A layer from raw tar bytes (any content, including hand-made malicious archives). */
export function layerFromTar(tar: Buffer, compression: LayerCompression = 'gzip', format: ManifestFormat = 'oci'): BuiltLayer {
  const data = compress(tar, compression);
  let mediaType: string;
  if (format === 'docker' && compression === 'gzip') mediaType = MEDIA_TYPES.dockerLayerGzip;
  else if (compression === 'gzip') mediaType = MEDIA_TYPES.ociLayerGzip;
  else if (compression === 'zstd') mediaType = MEDIA_TYPES.ociLayerZstd;
  else mediaType = MEDIA_TYPES.ociLayerTar;
  return { mediaType, digest: sha256(data), size: data.length, data, diffId: sha256(tar), tarSize: tar.length };
}

export function buildLayer(entries: readonly TarEntry[], compression: LayerCompression = 'gzip', format: ManifestFormat = 'oci'): BuiltLayer {
  return layerFromTar(writeTar(entries), compression, format);
}

export const BUSYBOX_PATH = '/bin/busybox';
const BUSYBOX_MODE = 0o755;
export const BUSYBOX_APPLETS = [
  'sh', 'ash', 'ls', 'cat', 'sleep', 'echo', 'id', 'env', 'true', 'false', 'mkdir', 'rm', 'rmdir', 'touch', 'ps', 'kill',
  'grep', 'head', 'tail', 'wc', 'hostname', 'mount', 'stat', 'test', 'uname', 'whoami', 'printf', 'date', 'sed', 'awk',
  'find', 'ln', 'cp', 'mv', 'chmod', 'chown', 'readlink', 'seq', 'tee', 'dd', 'sync', 'nc', 'ping', 'wget', 'ip', 'top',
  'pwd', 'sort', 'uniq', 'cut', 'tr', 'yes', 'du', 'df', 'nslookup', 'ifconfig', 'xargs', 'basename', 'dirname', 'md5sum',
];

export interface BusyboxLayerOptions {
  /** How applets point at /bin/busybox (default symlinks). */
  links?: 'symlink' | 'hardlink';
  /** Users added to /etc/passwd besides root and nobody, e.g. [{ name: 'app', uid: 1000, gid: 1000 }]. */
  users?: { name: string; uid: number; gid: number; home?: string }[];
  /** Groups added to /etc/group besides each user's own, e.g. [{ name: 'extra', gid: 50000, members: ['app'] }]. */
  groups?: { name: string; gid: number; members: string[] }[];
}

/** Tar entries of a minimal root filesystem around busybox-static. */
export function busyboxRootfsEntries(options: BusyboxLayerOptions = {}): TarEntry[] {
  const busybox = readFileSync(BUSYBOX_PATH);
  const users = [{ name: 'root', uid: 0, gid: 0, home: '/root' }, ...(options.users ?? []), { name: 'nobody', uid: 65534, gid: 65534, home: '/' }];
  const passwd = users.map((u) => `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home ?? `/home/${u.name}`}:/bin/sh\n`).join('');
  const group =
    users.map((u) => `${u.name === 'nobody' ? 'nogroup' : u.name}:x:${u.gid}:\n`).join('') +
    (options.groups ?? []).map((g) => `${g.name}:x:${g.gid}:${g.members.join(',')}\n`).join('');
  const entries: TarEntry[] = [
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', type: 'file', content: busybox, mode: BUSYBOX_MODE },
    { path: 'dev/', type: 'dir' },
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', type: 'file', content: passwd },
    { path: 'etc/group', type: 'file', content: group },
    { path: 'home/', type: 'dir' },
    { path: 'proc/', type: 'dir' },
    { path: 'root/', type: 'dir', mode: 0o700 },
    { path: 'sys/', type: 'dir' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    { path: 'usr/', type: 'dir' },
    { path: 'usr/bin/', type: 'dir' },
    { path: 'var/', type: 'dir' },
  ];
  for (const u of options.users ?? []) {
    entries.push({ path: `home/${u.name}/`, type: 'dir', uid: u.uid, gid: u.gid });
  }
  for (const applet of BUSYBOX_APPLETS) {
    entries.push(
      options.links === 'hardlink'
        ? // A hardlink header carries its own mode; containerd applies it to the shared inode, so it must be the target's.
          { path: `bin/${applet}`, type: 'hardlink', linkname: 'bin/busybox', mode: BUSYBOX_MODE }
        : { path: `bin/${applet}`, type: 'symlink', linkname: 'busybox' },
    );
  }
  return entries;
}

/** The parts of an image config tests set (config.config of the OCI image spec). */
export interface ImageRuntimeConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  StopSignal?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

/** The host's platform as OCI names it (amd64, arm64, ...). */
export function hostPlatform(): Platform {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch;
  return arch === 'arm64' ? { architecture: arch, os: 'linux', variant: 'v8' } : { architecture: arch, os: 'linux' };
}

export interface BuiltImage {
  format: ManifestFormat;
  config: Blob;
  layers: BuiltLayer[];
  manifest: Blob;
  platform: Platform;
}

export interface BuildImageOptions {
  layers: BuiltLayer[];
  config?: ImageRuntimeConfig;
  format?: ManifestFormat;
  platform?: Platform;
  annotations?: Record<string, string>;
  /** Extra top-level fields of the config JSON (e.g. "created", "author"). */
  configExtra?: Record<string, unknown>;
}

function jsonBlob(mediaType: string, value: unknown): Blob {
  const data = Buffer.from(JSON.stringify(value));
  return { mediaType, digest: sha256(data), size: data.length, data };
}

export function buildImage(options: BuildImageOptions): BuiltImage {
  const format = options.format ?? 'oci';
  const platform = options.platform ?? hostPlatform();
  const config = jsonBlob(format === 'oci' ? MEDIA_TYPES.ociConfig : MEDIA_TYPES.dockerConfig, {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...(options.config ?? {}) },
    rootfs: { type: 'layers', diff_ids: options.layers.map((l) => l.diffId) },
    history: options.layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `berth test layer ${i}` })),
    ...(options.configExtra ?? {}),
  });
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = jsonBlob(format === 'oci' ? MEDIA_TYPES.ociManifest : MEDIA_TYPES.dockerManifest, {
    schemaVersion: 2,
    mediaType: format === 'oci' ? MEDIA_TYPES.ociManifest : MEDIA_TYPES.dockerManifest,
    config: descriptor(config),
    layers: options.layers.map(descriptor),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  });
  return { format, config, layers: options.layers, manifest, platform };
}

export function buildIndex(images: readonly BuiltImage[], format: ManifestFormat = 'oci'): Blob {
  const mediaType = format === 'oci' ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.dockerManifestList;
  return jsonBlob(mediaType, {
    schemaVersion: 2,
    mediaType,
    manifests: images.map((image) => ({
      mediaType: image.manifest.mediaType,
      digest: image.manifest.digest,
      size: image.manifest.size,
      platform: image.platform,
    })),
  });
}

/** "name:tag" or "name@digest" → repository and tag-or-digest (no host: the registry is given). */
function splitRepository(nameAndTag: string): { repository: string; reference: string } {
  const at = nameAndTag.indexOf('@');
  if (at >= 0) return { repository: nameAndTag.slice(0, at), reference: nameAndTag.slice(at + 1) };
  const colon = nameAndTag.lastIndexOf(':');
  if (colon > nameAndTag.lastIndexOf('/')) return { repository: nameAndTag.slice(0, colon), reference: nameAndTag.slice(colon + 1) };
  return { repository: nameAndTag, reference: 'latest' };
}

async function registryFetch(
  registry: TestRegistry,
  repository: string,
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: Buffer },
): Promise<Response> {
  const authorization = await registry.authorization(repository);
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  if (authorization) headers.authorization = authorization;
  return fetch(url, { method: init.method, headers, body: init.body, redirect: 'manual', signal: AbortSignal.timeout(60_000) });
}

export async function pushBlob(registry: TestRegistry, repository: string, blob: Blob): Promise<void> {
  const head = await registryFetch(registry, repository, `${registry.url}/v2/${repository}/blobs/${blob.digest}`, { method: 'HEAD' });
  if (head.status === 200) return;
  const start = await registryFetch(registry, repository, `${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  await start.arrayBuffer();
  if (start.status !== 202) throw new Error(`blob upload start for ${repository}: HTTP ${start.status}`);
  const location = new URL(start.headers.get('location') ?? '', registry.url);
  location.searchParams.set('digest', blob.digest);
  const put = await registryFetch(registry, repository, location.toString(), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: blob.data,
  });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`blob upload of ${blob.digest} to ${repository}: HTTP ${put.status} ${text}`);
}

export async function pushManifest(registry: TestRegistry, repository: string, reference: string, manifest: Blob): Promise<void> {
  const put = await registryFetch(registry, repository, `${registry.url}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType },
    body: manifest.data,
  });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`manifest PUT ${repository}:${reference}: HTTP ${put.status} ${text}`);
}

export interface PushedImage {
  /** Pullable reference through the registry's own host, e.g. "127.0.0.1:5000/test/busybox:latest". */
  reference: string;
  /** "<host>/<repository>@<manifest or index digest>". */
  digestReference: string;
  repository: string;
  tag: string;
  /** Digest of what the tag points at (manifest, or index for multi-platform pushes). */
  digest: string;
  /** Image id berth reports: the config digest (of the host-platform image for indexes). */
  imageId: string;
  images: BuiltImage[];
}

/** Pushes one image (blobs, then manifest) under `name:tag` (no host; e.g. "test/busybox:latest"). */
export async function pushImage(registry: TestRegistry, nameAndTag: string, image: BuiltImage): Promise<PushedImage> {
  const { repository, reference: tag } = splitRepository(nameAndTag);
  for (const layer of image.layers) await pushBlob(registry, repository, layer);
  await pushBlob(registry, repository, image.config);
  await pushManifest(registry, repository, tag, image.manifest);
  return {
    reference: `${registry.host}/${repository}:${tag}`,
    digestReference: `${registry.host}/${repository}@${image.manifest.digest}`,
    repository,
    tag,
    digest: image.manifest.digest,
    imageId: image.config.digest,
    images: [image],
  };
}

/** Pushes several per-platform images and an index (or manifest list) over them under `name:tag`. */
export async function pushIndex(registry: TestRegistry, nameAndTag: string, images: BuiltImage[], format: ManifestFormat = 'oci'): Promise<PushedImage> {
  const { repository, reference: tag } = splitRepository(nameAndTag);
  for (const image of images) {
    for (const layer of image.layers) await pushBlob(registry, repository, layer);
    await pushBlob(registry, repository, image.config);
    await pushManifest(registry, repository, image.manifest.digest, image.manifest);
  }
  const index = buildIndex(images, format);
  await pushManifest(registry, repository, tag, index);
  const host = hostPlatform();
  const native = images.find((i) => i.platform.os === host.os && i.platform.architecture === host.architecture) ?? images[0];
  return {
    reference: `${registry.host}/${repository}:${tag}`,
    digestReference: `${registry.host}/${repository}@${index.digest}`,
    repository,
    tag,
    digest: index.digest,
    imageId: native.config.digest,
    images,
  };
}

export interface BusyboxImageOptions extends BusyboxLayerOptions {
  /** Layers on top of the busybox base layer, as tar entries or prebuilt layers. */
  extraLayers?: (TarEntry[] | BuiltLayer)[];
  config?: ImageRuntimeConfig;
  compression?: LayerCompression;
  format?: ManifestFormat;
  annotations?: Record<string, string>;
}

/** Builds a runnable busybox image (plus extra layers) in memory. Default Cmd is ["sh"]. */
export function buildBusyboxImage(options: BusyboxImageOptions = {}): BuiltImage {
  const compression = options.compression ?? 'gzip';
  const format = options.format ?? 'oci';
  const layers = [buildLayer(busyboxRootfsEntries(options), compression, format)];
  for (const extra of options.extraLayers ?? []) {
    layers.push(Array.isArray(extra) ? buildLayer(extra, compression, format) : extra);
  }
  return buildImage({ layers, config: { Cmd: ['sh'], ...(options.config ?? {}) }, format, annotations: options.annotations });
}

/** Builds and pushes a runnable busybox image: all another test needs for a container image. */
export async function pushBusyboxImage(registry: TestRegistry, nameAndTag: string, options: BusyboxImageOptions = {}): Promise<PushedImage> {
  return pushImage(registry, nameAndTag, buildBusyboxImage(options));
}

