// Manifests, indexes and image configs as registries serve them (OCI image spec
// and Docker schema 2), with the checks a pull relies on and the platform pick.
import { failedPrecondition, invalidArgument, notFound } from '../errors';
import type { OciImageRuntimeConfig } from './image-types';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What a manifest GET accepts, best first; schema 1 is listed only to recognise and refuse it clearly. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
  `${MediaType.dockerSchema1Signed};q=0.1`,
  `${MediaType.dockerSchema1};q=0.1`,
].join(', ');

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations: Record<string, string>;
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
  annotations: Record<string, string>;
}

export interface ImageConfigFile {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: OciImageRuntimeConfig;
  rootfs: { type: string; diff_ids: string[] };
  created?: string;
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

function checkDescriptor(value: unknown, where: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (!d || typeof d !== 'object') throw invalidArgument(`${where}: not a descriptor`);
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) {
    throw invalidArgument(`${where}: unsupported or malformed digest ${JSON.stringify(d.digest)} (only sha256 is supported)`);
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalidArgument(`${where}: bad size`);
  return { ...d, mediaType: typeof d.mediaType === 'string' ? d.mediaType : '', digest: d.digest, size: d.size } as Descriptor;
}

/** Parses a manifest or index body; the Content-Type header breaks ties when mediaType is absent. */
export function parseManifest(body: Buffer, contentType: string): ImageManifest | ImageIndex {
  const headerType = contentType.split(';')[0].trim();
  if (headerType === MediaType.dockerSchema1 || headerType === MediaType.dockerSchema1Signed) {
    throw failedPrecondition('the registry serves this image only as a Docker schema 1 manifest, which berth does not support (deprecated since 2017; re-push the image with a current client)');
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw invalidArgument('the registry returned a manifest that is not JSON');
  }
  if (json.schemaVersion === 1) {
    throw failedPrecondition('the registry serves this image only as a Docker schema 1 manifest, which berth does not support (deprecated since 2017; re-push the image with a current client)');
  }
  if (json.schemaVersion !== 2) throw invalidArgument(`unsupported manifest schemaVersion ${JSON.stringify(json.schemaVersion)}`);
  const mediaType = typeof json.mediaType === 'string' ? json.mediaType : headerType;
  const annotations = (json.annotations && typeof json.annotations === 'object' ? json.annotations : {}) as Record<string, string>;
  if (Array.isArray(json.manifests) || mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    if (!Array.isArray(json.manifests)) throw invalidArgument('index without a manifests list');
    return {
      kind: 'index',
      mediaType: mediaType || MediaType.ociIndex,
      manifests: json.manifests.map((m, i) => checkDescriptor(m, `index manifests[${i}]`)),
      annotations,
    };
  }
  if (!json.config || !Array.isArray(json.layers)) throw invalidArgument(`manifest of type "${mediaType}" has no config or layers`);
  const manifest: ImageManifest = {
    kind: 'manifest',
    mediaType: mediaType || MediaType.ociManifest,
    config: checkDescriptor(json.config, 'manifest config'),
    layers: json.layers.map((l, i) => checkDescriptor(l, `manifest layers[${i}]`)),
    annotations,
  };
  for (const layer of manifest.layers) layerCompression(layer.mediaType);
  return manifest;
}

/** The compression of a layer from its media type; refuses foreign and encrypted layers. */
export function layerCompression(mediaType: string): LayerCompression {
  switch (mediaType) {
    case 'application/vnd.oci.image.layer.v1.tar':
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar':
    case 'application/vnd.docker.image.rootfs.diff.tar':
      return 'none';
    case 'application/vnd.oci.image.layer.v1.tar+gzip':
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
    case 'application/vnd.docker.image.rootfs.diff.tar.gzip':
    case 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip':
      return 'gzip';
    case 'application/vnd.oci.image.layer.v1.tar+zstd':
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd':
    case 'application/vnd.docker.image.rootfs.diff.tar.zstd':
      return 'zstd';
    default:
      throw invalidArgument(`unsupported layer media type "${mediaType}"`);
  }
}

export function parseImageConfig(body: Buffer): ImageConfigFile {
  let json: ImageConfigFile;
  try {
    json = JSON.parse(body.toString('utf8')) as ImageConfigFile;
  } catch {
    throw invalidArgument('image config is not JSON');
  }
  if (!json || typeof json !== 'object' || !json.rootfs || !Array.isArray(json.rootfs.diff_ids)) {
    throw invalidArgument('image config has no rootfs.diff_ids');
  }
  for (const id of json.rootfs.diff_ids) {
    if (typeof id !== 'string' || !DIGEST.test(id)) throw invalidArgument(`image config has a bad diff_id ${JSON.stringify(id)}`);
  }
  return json;
}

/** uid/username from an image config's User ("1000", "1000:1000", "app", "app:grp"). */
export function userOfConfig(user: string | undefined): { uid?: number; username: string } {
  if (!user) return { username: '' };
  const name = user.split(':')[0];
  if (/^\d+$/.test(name)) return { uid: Number(name), username: '' };
  return { username: name };
}

/** The OCI name of this host's architecture, with the variant an image for it may carry. */
export function hostPlatform(arch: string = process.arch): Platform {
  switch (arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm':
      return { os: 'linux', architecture: 'arm', variant: 'v7' };
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: 'ppc64le' };
    default:
      return { os: 'linux', architecture: arch };
  }
}

/** Picks the manifest for `platform` from an index: exact variant first, then no variant; undefined when none fits. */
export function pickPlatform(index: ImageIndex, platform: Platform = hostPlatform()): Descriptor | undefined {
  const candidates = index.manifests.filter(
    (m) => m.mediaType !== MediaType.ociIndex && m.mediaType !== MediaType.dockerManifestList || m.platform !== undefined,
  );
  const fits = candidates.filter((m) => m.platform && m.platform.os === platform.os && m.platform.architecture === platform.architecture);
  const exact = fits.find((m) => (m.platform?.variant ?? '') === (platform.variant ?? ''));
  if (exact) return exact;
  // arm64 images usually carry no variant (v8 implied); an image with an unknown variant still runs better than none.
  const noVariant = fits.find((m) => !m.platform?.variant);
  if (noVariant) return noVariant;
  if (fits.length > 0) return fits[0];
  // Attestation-free single-entry indexes without platforms: the one entry is the image.
  const platformless = candidates.filter((m) => !m.platform);
  if (platformless.length === 1 && index.manifests.length === 1) return platformless[0];
  return undefined;
}

export function noPlatformMatch(index: ImageIndex, platform: Platform = hostPlatform()): Error {
  const offered = index.manifests
    .map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : 'unknown'))
    .join(', ');
  return notFound(`no image for platform ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''} in the index (it offers: ${offered || 'nothing'})`);
}
