// What a container offers the streaming, stats and events parts. Owned by
// runtime/container/.
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { OciProcess, OciRuntime } from '../oci/oci-runtime';

export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface ContainerView {
  id: string;
  podSandboxId: string;
  config: ContainerConfig__Output;
  state: ContainerState;
  /** Unix nanoseconds as decimal strings; "0" when not reached. */
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  /** Image as requested, and the resolved image id ("sha256:..."). */
  imageRef: string;
  imageId: string;
  /** The container's init process on the host; 0 when not running. */
  pid: number;
  /** Cgroup path relative to each hierarchy's root (cgroupfs), e.g. "/berth/pod<id>/<id>". */
  cgroupPath: string;
  /** Overlay upper dir: the container's writable layer. */
  upperDir: string;
  /** Runtime handler and what is needed to run "<runtime> --root <root> exec <id>". */
  runtimeHandler: string;
  runtimePath: string;
  runtimeRoot: string;
  /** Bundle dir holding config.json and conmon's files (attach socket, ctl fifo). */
  bundleDir: string;
}

export interface ContainerLookup {
  /** By full id or unique id prefix; undefined when absent. */
  get(idOrPrefix: string): ContainerView | undefined;
  list(): ContainerView[];
}

/** A process to exec in a running container, and the runtime that runs it. */
export interface ExecTarget {
  /** The container's full id. */
  id: string;
  runtime: OciRuntime;
  /** The one shape of an exec'd process (process-spec.ts execProcess). */
  process: OciProcess;
}

/** What interactive sessions (exec, attach) need of the containers they join. */
export interface ContainerSessions {
  /** A running container by id or unique prefix: NOT_FOUND, INVALID_ARGUMENT (empty, ambiguous), FAILED_PRECONDITION (not running). */
  requireRunning(idOrPrefix: string): ContainerView;
  /** The process `cmd` runs as in the running container, and its runtime. */
  execTarget(idOrPrefix: string, cmd: string[], tty: boolean): ExecTarget;
}
