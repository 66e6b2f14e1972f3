// What a pod sandbox offers the rest of berth. Owned by runtime/sandbox/; the
// container, streaming and stats parts depend only on these types.
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import type { PodIdMappings } from './user-namespace-options';

export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export type NamespaceModeName = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';

/** Namespace modes as the pod asked (POD: the pod's own, NODE: the host's, CONTAINER: each container its own (pid only)). */
export interface PodNamespaceModes {
  network: NamespaceModeName;
  pid: NamespaceModeName;
  ipc: NamespaceModeName;
}

export interface PodSandboxView {
  id: string;
  /** The request as the kubelet sent it (metadata, labels, annotations, linux options, dns, ports...). */
  config: PodSandboxConfig__Output;
  state: PodSandboxState;
  /** Unix nanoseconds, as a decimal string (int64 on the wire). */
  createdAt: string;
  runtimeHandler: string;
  /** Pinned namespace files; "" where the pod uses the host's namespace. */
  netnsPath: string;
  ipcnsPath: string;
  utsnsPath: string;
  /** The pin of the pod's shared PID namespace when pid mode is POD; "" otherwise. */
  pidnsPath: string;
  /** That pin, the namespace's inode and its holder, for the check made right before a container joins it. */
  pidNamespace?: PodPidNamespace;
  /** Cgroup parent for the pod's containers (cgroupfs path or systemd slice). */
  cgroupParent: string;
  /** Files bind-mounted into every container of the pod. */
  hostsPath: string;
  resolvConfPath: string;
  hostnamePath: string;
  /** The pod's /dev/shm (a tmpfs mount); "" when the pod uses the host IPC namespace. */
  shmPath: string;
  hostname: string;
  /** Pod IPs, first one the primary. */
  ips: string[];
  namespaceModes: PodNamespaceModes;
  /** The pod's log directory ("" when the kubelet gave none). */
  logDirectory: string;
  /** The pod's own user namespace (hostUsers: false): its pin and mappings; undefined: the host's. */
  userNamespace: PodUserNamespace | undefined;
}

export interface PodUserNamespace extends PodIdMappings {
  /** The pinned user namespace the pod's containers join. */
  path: string;
}

/** A pod's pinned PID namespace: what must still be true when a container joins it. */
export interface PodPidNamespace {
  path: string;
  inode: number;
  /** The process that is the namespace's init: while it runs, /proc/<holderPid>/ns/pid has this inode. */
  holderPid: number;
}

/** The sandbox side as the container model sees it. */
export interface SandboxLookup {
  /** By full id or unique id prefix; undefined when absent. */
  get(idOrPrefix: string): PodSandboxView | undefined;
  list(): PodSandboxView[];
  /**
   * Runs `work` with the pod held shared (by id or unique prefix): the pod's
   * stop and removal wait until it is done, and it starts only once the pod
   * is READY (NOT_FOUND when the pod is gone, FAILED_PRECONDITION when it is
   * not ready, both checked again once the hold is taken).
   */
  whileReady<T>(idOrPrefix: string, work: (pod: PodSandboxView) => Promise<T>): Promise<T>;
}

/** Registered by the container model so sandbox stop/remove can act on a pod's containers. */
export interface PodContainerHooks {
  /** Stops every container of the pod (timeout in seconds, 0 = kill now). */
  stopPodContainers(podSandboxId: string, timeoutSeconds: number): Promise<void>;
  /** Removes every container of the pod. */
  removePodContainers(podSandboxId: string): Promise<void>;
}
