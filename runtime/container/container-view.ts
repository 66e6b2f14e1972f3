// A container as callers see it: the CRI state of a record, the view the
// streaming, stats and events parts use, the detail ContainerStatus reports,
// and ListContainers' filter.
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { OciRuntimes } from '../oci/oci-runtimes';
import type { ContainerRecord } from './container-store';
import type { ContainerState, ContainerView } from './container-types';
import type { OciSpec } from './oci-spec-types';

/** A container as the status call reports it: the view plus what only ContainerStatus shows. */
export interface ContainerDetail extends ContainerView {
  reason: string;
  message: string;
  /** The log path the caller asked for (the pod's log_directory joined with log_path), "" when it asked for none. */
  logPath: string;
  spec: OciSpec | undefined;
  /** uid/gid/supplemental groups the init process runs as. */
  user: { uid: number; gid: number; additionalGids: number[] } | undefined;
  resources: LinuxContainerResources__Output | null;
  stopSignal: string;
}

export interface ContainerFilterOptions {
  id?: string;
  state?: ContainerState;
  podSandboxId?: string;
  labelSelector?: Record<string, string>;
}

export function stateOf(record: ContainerRecord): ContainerState {
  switch (record.phase) {
    case 'created':
      return 'CONTAINER_CREATED';
    case 'running':
      return 'CONTAINER_RUNNING';
    case 'exited':
      return 'CONTAINER_EXITED';
    default:
      return 'CONTAINER_UNKNOWN';
  }
}

/** A record's ContainerConfig never changes after it is made: parsed once (lists ask every second). */
const parsedConfigs = new WeakMap<ContainerRecord, ContainerConfig__Output>();

function configOf(record: ContainerRecord): ContainerConfig__Output {
  let config = parsedConfigs.get(record);
  if (!config) {
    config = JSON.parse(record.configJson) as ContainerConfig__Output;
    parsedConfigs.set(record, config);
  }
  return config;
}

/** Paths derived from a record, kept with the cgroups path they came from (set once the spec is built). */
const derivedPaths = new WeakMap<ContainerRecord, { from: string; cgroupPath: string; upperDir: string }>();

function pathsOf(record: ContainerRecord, cgroupRelativePath?: (cgroupsPath: string) => string): { cgroupPath: string; upperDir: string } {
  const known = cgroupRelativePath ? derivedPaths.get(record) : undefined;
  if (known && known.from === record.cgroupsPath) return known;
  let cgroupPath = record.cgroupsPath;
  if (cgroupRelativePath && cgroupPath) {
    try {
      cgroupPath = cgroupRelativePath(cgroupPath);
    } catch {
      // leave as written in the spec
    }
  }
  const derived = { from: record.cgroupsPath, cgroupPath, upperDir: join(record.dir, 'upper') };
  if (cgroupRelativePath) derivedPaths.set(record, derived);
  return derived;
}

export function viewOf(record: ContainerRecord, runtimes: OciRuntimes, cgroupRelativePath?: (cgroupsPath: string) => string): ContainerView {
  const runtime = runtimes.find(record.runtimeHandler);
  const { cgroupPath, upperDir } = pathsOf(record, cgroupRelativePath);
  return {
    ...listedOf(record),
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    exitCode: record.exitCode,
    pid: record.phase === 'running' || record.phase === 'created' ? record.pid : 0,
    cgroupPath,
    upperDir,
    runtimeHandler: record.runtimeHandler,
    runtimePath: runtime?.path ?? '',
    runtimeRoot: runtime?.root ?? '',
    bundleDir: record.dir,
  };
}

/** The OCI spec a record holds; undefined before it was built. */
export function specOf(record: ContainerRecord): OciSpec | undefined {
  return record.specJson ? (JSON.parse(record.specJson) as OciSpec) : undefined;
}

export function detailOf(record: ContainerRecord, view: ContainerView): ContainerDetail {
  const spec = specOf(record);
  return {
    ...view,
    reason: record.reason,
    message: record.message,
    // Without a log path from the caller conmon still writes one, in the bundle: berth's own file, never reported.
    logPath: record.logPath.startsWith(`${record.dir}/`) ? '' : record.logPath,
    spec,
    user: spec ? { uid: spec.process.user.uid, gid: spec.process.user.gid, additionalGids: spec.process.user.additionalGids ?? [] } : undefined,
    resources: record.resourcesJson ? (JSON.parse(record.resourcesJson) as LinuxContainerResources__Output) : null,
    stopSignal: record.stopSignal,
  };
}

export function matchesFilter(view: Pick<ContainerView, 'id' | 'state' | 'podSandboxId' | 'config'>, filter: ContainerFilterOptions): boolean {
  if (filter.id && !view.id.startsWith(filter.id)) return false;
  if (filter.state && view.state !== filter.state) return false;
  if (filter.podSandboxId && !view.podSandboxId.startsWith(filter.podSandboxId)) return false;
  const selector = filter.labelSelector;
  if (selector) for (const k in selector) if ((view.config.labels ?? {})[k] !== selector[k]) return false;
  return true;
}

/** What a list shows of a container. */
export type ListedContainer = Pick<ContainerView, 'id' | 'podSandboxId' | 'config' | 'state' | 'createdAt' | 'imageRef' | 'imageId'>;

/** A record as a list shows it: none of the paths and runtime lookups of a full view (the kubelet relists every second). */
export function listedOf(record: ContainerRecord): ListedContainer {
  return {
    id: record.id,
    podSandboxId: record.podSandboxId,
    config: configOf(record),
    state: stateOf(record),
    createdAt: record.createdAt,
    imageRef: record.imageRef,
    imageId: record.imageId,
  };
}
