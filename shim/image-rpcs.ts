// ImageService: PullImage, ListImages, StreamImages, ImageStatus, RemoveImage,
// ImageFsInfo. Thin: validate, call the ImageStore (runtime/image/), map to CRI.
import { join } from 'node:path';
import type { Image } from '../cri-proto/generated/runtime/v1/Image';
import type { FilesystemUsage } from '../cri-proto/generated/runtime/v1/FilesystemUsage';
import { invalidArgument } from '../runtime/errors';
import { ImageStore, type FilesystemUsageInfo } from '../runtime/image/image-store';
import type { ImageRecord } from '../runtime/image/image-types';
import type { RegistryCredentials } from '../runtime/image/registry-client';
import type { ShimContext } from './context';
import type { CriHandlers } from './handler';

/** StreamImages sends at most this many images per message. */
const STREAM_CHUNK = 100;

function toCriImage(image: ImageRecord): Image {
  return {
    id: image.id,
    repo_tags: image.repoTags,
    repo_digests: image.repoDigests,
    size: String(image.size),
    uid: image.uid !== undefined ? { value: String(image.uid) } : null,
    username: image.username,
    spec: { image: image.id, annotations: image.annotations, user_specified_image: '', runtime_handler: '', image_ref: image.id },
    pinned: image.pinned,
  };
}

function toCriUsage(usage: FilesystemUsageInfo): FilesystemUsage {
  return {
    timestamp: String(BigInt(Date.now()) * 1_000_000n),
    fs_id: { mountpoint: usage.mountpoint },
    used_bytes: { value: String(usage.usedBytes) },
    inodes_used: { value: String(usage.inodesUsed) },
  };
}

function credentialsOf(auth: { username?: string; password?: string; auth?: string; server_address?: string; identity_token?: string; registry_token?: string } | null | undefined): RegistryCredentials | undefined {
  if (!auth) return undefined;
  const creds: RegistryCredentials = {
    ...(auth.username ? { username: auth.username, password: auth.password ?? '' } : {}),
    ...(auth.auth ? { auth: auth.auth } : {}),
    ...(auth.identity_token ? { identityToken: auth.identity_token } : {}),
    ...(auth.registry_token ? { registryToken: auth.registry_token } : {}),
    ...(auth.server_address ? { serverAddress: auth.server_address } : {}),
  };
  return Object.keys(creds).length > 0 ? creds : undefined;
}

function requireImage(spec: { image?: string } | null | undefined, field = 'image.image'): string {
  const image = spec?.image?.trim() ?? '';
  if (!image) throw invalidArgument(`${field} is required`);
  return image;
}

export function imageServiceHandlers(ctx: ShimContext): CriHandlers {
  const store: ImageStore = ctx.images;
  return {
    async PullImage(request) {
      const image = requireImage(request.image);
      const pulled = await store.pull(image, credentialsOf(request.auth));
      // As containerd: the image ref is the image id (config digest).
      return { image_ref: pulled.id };
    },

    async ListImages(request) {
      const filter = request.filter?.image?.image?.trim();
      return { images: store.list(filter || undefined).map(toCriImage) };
    },

    async StreamImages(request, sink) {
      const filter = request.filter?.image?.image?.trim();
      const images = store.list(filter || undefined).map(toCriImage);
      for (let i = 0; i < images.length || i === 0; i += STREAM_CHUNK) {
        if (sink.cancelled()) return;
        await sink.write({ images: images.slice(i, i + STREAM_CHUNK) });
      }
    },

    async ImageStatus(request) {
      const image = requireImage(request.image);
      const status = store.status(image);
      // Absent image: an empty answer, not NOT_FOUND (the kubelet relies on this).
      if (!status) return { image: null, info: {} };
      const info: Record<string, string> = request.verbose ? { info: JSON.stringify(status.info) } : {};
      return { image: toCriImage(status.image), info };
    },

    async RemoveImage(request) {
      const image = requireImage(request.image);
      await store.remove(image);
      return {};
    },

    async ImageFsInfo() {
      const images = store.imageFilesystemUsage();
      const containers = await ImageStore.directoryUsage(join(ctx.config.root, 'containers'));
      return { image_filesystems: [toCriUsage(images)], container_filesystems: [toCriUsage({ ...containers, mountpoint: ctx.config.root })] };
    },
  };
}
