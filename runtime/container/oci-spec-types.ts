// The shape of the OCI runtime spec (config.json) berth writes, and what
// building one takes. The process object is runtime/oci's (OciProcess): the
// runtime reads it again for every exec.
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { CgroupDriver } from '../config';
import type { HostFacts } from '../host/host-facts';
import type { ImageRecord } from '../image/image-types';
import type { OciProcess } from '../oci/oci-runtime';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import type { OciSeccomp } from './seccomp-profile';
import type { ResolvedUser, UserDatabase } from './user-lookup';

/** The CRI's security context of a container (null when the request has none). */
export type ContainerSecurityContext = NonNullable<ContainerConfig__Output['linux']>['security_context'] | null;

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciLinuxDevice {
  path: string;
  type: 'c' | 'b' | 'p' | 'u';
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface OciDeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface OciResources {
  devices?: OciDeviceRule[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  hugepageLimits?: { pageSize: string; limit: number }[];
  unified?: Record<string, string>;
}

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    resources: OciResources;
    cgroupsPath: string;
    namespaces: OciNamespace[];
    devices: OciLinuxDevice[];
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: OciSeccomp;
    sysctl?: Record<string, string>;
    rootfsPropagation?: string;
    /** With a user namespace (the pod's, joined by path): runc 1.1 wants the mappings too. */
    uidMappings?: OciIdMapping[];
    gidMappings?: OciIdMapping[];
  };
}

export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface SpecInput {
  id: string;
  config: ContainerConfig__Output;
  sandbox: PodSandboxView;
  image: ImageRecord;
  /** The mounted rootfs (overlay). */
  rootfs: string;
  /** The rootfs' /etc/passwd and /etc/group, read beforehand (user-lookup.ts readUserDatabase). */
  users: UserDatabase;
  host: Pick<HostFacts, 'minOomScoreAdj' | 'cgroup'>;
  cgroupDriver: CgroupDriver;
  /** PID-namespace file of the target container when pid mode is TARGET. */
  targetPidNsPath?: string;
  /** Runtime-acting annotations the handler's configuration lets through (spec-annotations.ts); absent = none. */
  allowedAnnotations?: readonly string[];
  /** File of berth's RuntimeDefault profile when configured; "" = built in. */
  seccompDefaultProfilePath: string;
  /** Where host mount propagation is read (tests pass a fixture). */
  mountInfoPath?: string;
  /** Capabilities berthd holds (default: read from /proc/self/status). */
  hostCapabilities?: string[];
  /** Per config.mounts index, the host-side prepared mount to bind instead of host_path ("" or absent: host_path); see prepared-mounts.ts. */
  preparedSources?: string[];
}

export interface BuiltSpec {
  spec: OciSpec;
  user: ResolvedUser;
  /** Signal to stop the container with (image StopSignal or the CRI's stop_signal). */
  stopSignal: string;
  /** What the spec leaves out of the request, for the log. */
  warnings: string[];
}
