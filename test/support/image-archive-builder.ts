// Image archives built in memory for `berthd images import` tests: OCI image
// layouts (as containerd, skopeo and Docker 25+ write them) and `docker save`
// archives (the v1.2 layout, and Docker 25+'s with an OCI layout inside), as
// tar entries for test/support/tar-writer.ts.
import { MEDIA_TYPES, type Blob, type BuiltImage } from './oci-image-builder';
import type { TarEntry } from './tar-writer';

const hexOf = (digest: string): string => digest.slice('sha256:'.length);

export interface ArchivedImage {
  image: BuiltImage;
  /** Names as the archive spells them ("example.test/app:v1", or "app:v1" for docker.io/library/app). */
  names?: string[];
  /** Put an index over the image (an OCI layout entry pointing at an index, as ctr export writes for multi-platform images). */
  index?: Blob;
}

/**
 * An OCI image layout as tar entries: oci-layout, blobs/sha256/…, index.json with an entry per name
 * (io.containerd.image.name = the full name, org.opencontainers.image.ref.name = its tag, as containerd
 * writes them); `refNameOnly` writes only the ref.name annotation, as skopeo and Docker's OCI exports may.
 */
export function ociLayoutEntries(images: readonly ArchivedImage[], options: { refNameOnly?: boolean } = {}): TarEntry[] {
  const blobs = new Map<string, Blob>();
  const manifests: object[] = [];
  for (const { image, names = [], index } of images) {
    for (const blob of [image.config, image.manifest, ...image.layers, ...(index ? [index] : [])]) blobs.set(blob.digest, blob);
    const top = index ?? image.manifest;
    const descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.size };
    if (names.length === 0) manifests.push(descriptor);
    for (const name of names) {
      const tag = name.includes(':') && name.lastIndexOf(':') > name.lastIndexOf('/') ? name.slice(name.lastIndexOf(':') + 1) : 'latest';
      const annotations: Record<string, string> = options.refNameOnly ? { 'org.opencontainers.image.ref.name': name } : { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag };
      manifests.push({ ...descriptor, annotations });
    }
  }
  return [
    { path: 'oci-layout', type: 'file', content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { path: 'blobs/', type: 'dir' },
    { path: 'blobs/sha256/', type: 'dir' },
    ...[...blobs.values()].map((b): TarEntry => ({ path: `blobs/sha256/${hexOf(b.digest)}`, type: 'file', content: b.data })),
    { path: 'index.json', type: 'file', content: JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests }) },
  ];
}

/**
 * A `docker save` archive as tar entries. 'v1.2': Docker before 25 (<id>/layer.tar uncompressed, <config-hex>.json,
 * manifest.json with RepoTags, the legacy repositories file); 'oci': Docker 25 and later (an OCI layout of
 * uncompressed layers with manifest.json and repositories beside it, names also in the index's annotations).
 */
export function dockerSaveEntries(images: readonly ArchivedImage[], layout: 'v1.2' | 'oci' = 'v1.2'): TarEntry[] {
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  for (const { image, names = [] } of images) {
    const layerPaths: string[] = [];
    for (const layer of image.layers) {
      const path = layout === 'oci' ? `blobs/sha256/${hexOf(layer.digest)}` : `${hexOf(layer.diffId)}/layer.tar`;
      layerPaths.push(path);
      if (seen.has(path) || layout === 'oci') continue;
      seen.add(path);
      entries.push({ path: `${hexOf(layer.diffId)}/`, type: 'dir' }, { path, type: 'file', content: layer.data });
    }
    const configPath = layout === 'oci' ? `blobs/sha256/${hexOf(image.config.digest)}` : `${hexOf(image.config.digest)}.json`;
    if (layout === 'v1.2') entries.push({ path: configPath, type: 'file', content: image.config.data });
    manifest.push({ Config: configPath, RepoTags: names, Layers: layerPaths });
    for (const name of names) {
      const colon = name.lastIndexOf(':');
      (repositories[name.slice(0, colon)] ??= {})[name.slice(colon + 1)] = hexOf(image.layers[image.layers.length - 1].diffId);
    }
  }
  const oci = layout === 'oci' ? ociLayoutEntries(images) : [];
  return [
    ...oci,
    ...entries,
    { path: 'manifest.json', type: 'file', content: JSON.stringify(manifest) },
    { path: 'repositories', type: 'file', content: JSON.stringify(repositories) },
  ];
}
