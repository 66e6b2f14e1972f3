import type { IdMapping } from '../../native';

// What runtime/image offers the rest of berth (the Images facade in images.ts
// implements it); the container model depends only on these types.

/** The parts of an OCI image config (config.config) a container is built from. */
export interface OciImageRuntimeConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  StopSignal?: string;
  Labels?: Record<string, string>;
  Volumes?: Record<string, object>;
  ExposedPorts?: Record<string, object>;
}

export interface ImageRecord {
  /** "sha256:<hex>" of the image config: the image id, as containerd reports it. */
  id: string;
  /** e.g. ["docker.io/library/busybox:latest"]. */
  repoTags: string[];
  /** e.g. ["docker.io/library/busybox@sha256:..."]. */
  repoDigests: string[];
  /** Bytes of the image's blobs (compressed layers + config). */
  size: number;
  /** Numeric uid when the image's USER is numeric (or "uid:gid"). */
  uid?: number;
  /** User name when the image's USER is a name. */
  username: string;
  pinned: boolean;
  annotations: Record<string, string>;
  config: OciImageRuntimeConfig;
}

/** An image resolved for a container: what CreateContainer needs. */
export interface ImageForContainer {
  image: ImageRecord;
  /** Unpacked layer directories, lowest (base) layer first. */
  layerDirs: string[];
}

/** The image side as the container model sees it. */
export interface ContainerImageSource {
  /** Resolves by id, id prefix, tag, digest or short name; undefined when absent. */
  resolve(reference: string): ImageRecord | undefined;
  /** Resolves and returns the unpacked layers; throws NotFound when the image is absent. */
  forContainer(reference: string): ImageForContainer;
}

/** A root filesystem for a container in its pod's user namespace (hostUsers: false). */
export interface RootfsIdmap {
  /** The pod's pinned user namespace: the layers are seen through its mapping. */
  usernsPath: string;
  /** The pod's mappings: the upper dir's owner (so the rootfs' top directory's) is mapped with them. */
  uids: IdMapping;
  gids: IdMapping;
}

/** Mounts a container root filesystem as overlay(layers + upper). */
export interface RootfsMounter {
  mount(options: { layerDirs: string[]; upperDir: string; workDir: string; target: string; readonly?: boolean; idmap?: RootfsIdmap }): void;
  /** Unmounts; succeeds when nothing is mounted there. */
  unmount(target: string): void;
}

/** ImageStatus' answer: the image, and everything known about it for verbose info. */
export interface ImageStatusInfo {
  image: ImageRecord;
  /** For ImageStatus(verbose).info["info"]. */
  info: Record<string, unknown>;
}
