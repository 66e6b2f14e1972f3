// ImageService: PullImage, ListImages, StreamImages, ImageStatus, RemoveImage,
// ImageFsInfo. Thin: validate (runtime/image/image-request.ts), call Images
// (runtime/image/images.ts), map to CRI.
import type { FilesystemUsage } from '../cri-proto/generated/runtime/v1/FilesystemUsage';
import type { Image } from '../cri-proto/generated/runtime/v1/Image';
import type { FilesystemUsageInfo } from '../runtime/image/image-fs-usage';
import { imageFilterOf, requiredImage, validatePullRequest } from '../runtime/image/image-request';
import type { ImageRecord } from '../runtime/image/image-types';
import type { ShimServices } from './services';
import type { CriHandlers } from './handler';
import { streamInChunks } from './stream-chunks';
import { KeptAnswer, responseSerializer } from './list-encoding';
import { criServiceDefinitions } from '../cri-proto';

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
    // When the figure was measured (in the background), not when this call came.
    timestamp: usage.timestampNs,
    fs_id: { mountpoint: usage.mountpoint },
    used_bytes: { value: String(usage.usedBytes) },
    inodes_used: { value: String(usage.inodesUsed) },
  };
}

export function imageServiceHandlers(ctx: Pick<ShimServices, 'images'>): CriHandlers {
  // The whole image list, kept until an image or a name of one is added or removed (one SQL read per image otherwise).
  const allImages = new KeptAnswer(responseSerializer(criServiceDefinitions().ImageService, 'ListImages'));
  return {
    async PullImage(request) {
      const { image, credentials } = validatePullRequest(request);
      const pulled = await ctx.images.pull(image, credentials);
      // As containerd: the image ref is the image id (config digest).
      return { image_ref: pulled.id };
    },

    async ListImages(request) {
      const filter = imageFilterOf(request.filter);
      if (filter) return { images: ctx.images.list(filter).map(toCriImage) };
      return allImages.answer([ctx.images.generation], () => ({ images: ctx.images.list().map(toCriImage) }));
    },

    async StreamImages(request, sink) {
      const images = ctx.images.list(imageFilterOf(request.filter)).map(toCriImage);
      await streamInChunks(images, sink, { size: STREAM_CHUNK, wrap: (chunk) => ({ images: chunk }) });
    },

    async ImageStatus(request) {
      const status = ctx.images.status(requiredImage(request.image));
      // Absent image: an empty answer, not NOT_FOUND (the kubelet relies on this).
      if (!status) return { image: null, info: {} };
      const info: Record<string, string> = request.verbose ? { info: JSON.stringify(status.info) } : {};
      return { image: toCriImage(status.image), info };
    },

    async RemoveImage(request) {
      await ctx.images.remove(requiredImage(request.image));
      return {};
    },

    async ImageFsInfo() {
      const usage = await ctx.images.filesystemUsage();
      return { image_filesystems: [toCriUsage(usage.images)], container_filesystems: [toCriUsage(usage.containers)] };
    },
  };
}
