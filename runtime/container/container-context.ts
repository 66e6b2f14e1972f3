// What the container verbs (create, start, stop, remove, exec...) share: the
// configuration and collaborators berthd hands the model, and the parts the
// Containers facade builds once. Each verb is a function of this context.
import type { BerthNative } from '../../native';
import type { RuntimeLog } from '../common/log';
import type { BerthConfig } from '../config';
import type { ContainerEventPublisher } from '../events/event-types';
import type { HostFacts } from '../host/host-facts';
import type { ContainerImageSource, RootfsMounter } from '../image/image-types';
import type { Conmon } from '../oci/conmon';
import type { OciCallObserver } from '../oci/oci-runtime';
import type { OciRuntimes } from '../oci/oci-runtimes';
import type { SandboxLookup } from '../sandbox/sandbox-types';
import type { ContainerRecords } from './container-records';
import type { ContainerStore } from './container-store';
import type { ExitWatcher } from './exit-watcher';

/** Keeps an image's layers on disk while a container uses them (the image store). */
export interface LayerHolds {
  holdLayers(holder: string, imageId: string): void;
  /** Holds an image mounted as a volume: its layers, and the image (RemoveImage refuses it). */
  holdImageAsVolume(holder: string, imageId: string): void;
  /** The holds are gone when it returns; the promise settles once what nothing needs any more is collected. */
  releaseLayers(holder: string): Promise<void>;
}

export interface ContainersOptions {
  config: BerthConfig;
  host: HostFacts;
  store: ContainerStore;
  log: RuntimeLog;
  sandboxes: SandboxLookup;
  images: ContainerImageSource;
  rootfs: RootfsMounter;
  events?: ContainerEventPublisher;
  layerHolds?: LayerHolds;
  /** Cgroup path relative to the hierarchies' root for a spec's cgroupsPath (systemd slices expanded). */
  cgroupRelativePath?: (cgroupsPath: string) => string;
  /** The pids in a container's cgroup (a spec's cgroupsPath), where ExecSync looks for what it left behind. */
  cgroupProcesses?: (cgroupsPath: string) => number[];
  /** The cgroup.procs file of a container's cgroup (a spec's cgroupsPath) in every hierarchy, for its SIGKILL. */
  cgroupProcsFiles?: (cgroupsPath: string) => string[];
  /** Latency of each OCI runtime and conmon call. */
  observeOciCall?: OciCallObserver;
  /** The addon, for the mounts prepared host-side (prepared-mounts.ts); loaded when not given. */
  native?: BerthNative;
}

/** Where berth keeps each container's files. */
export interface ContainerDirs {
  /** Bundles: <containers>/<id>/ holds config.json, rootfs/, upper/, work/ and conmon's files. */
  containers: string;
  /** conmon's --exit-dir. */
  exits: string;
  /** conmon's --socket-dir-path. */
  sockets: string;
}

export interface ContainerContext {
  config: BerthConfig;
  host: HostFacts;
  log: RuntimeLog;
  sandboxes: SandboxLookup;
  images: ContainerImageSource;
  rootfs: RootfsMounter;
  layerHolds: LayerHolds | undefined;
  cgroupRelativePath: ((cgroupsPath: string) => string) | undefined;
  cgroupProcesses: ((cgroupsPath: string) => number[]) | undefined;
  cgroupProcsFiles: ((cgroupsPath: string) => string[]) | undefined;
  records: ContainerRecords;
  exits: ExitWatcher;
  runtimes: OciRuntimes;
  conmon: Conmon;
  dirs: ContainerDirs;
  native: BerthNative;
}
