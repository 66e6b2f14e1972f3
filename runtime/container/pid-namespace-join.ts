// The PID namespace a new container joins, checked right before runc sees it.
// A pid names a process only until it is reaped: /proc/<pid>/ns/pid of a dead
// holder or target may be a stranger's namespace, even the host's. A pod's
// shared namespace is joined through its pin (runtime/sandbox/namespace-pins.ts),
// which must still hold the recorded namespace while its holder runs; a
// TARGET container's namespace is pinned into the new bundle through a pidfd
// (native pinPidNamespace) and kept only if the process it came from is the
// target's init as its runtime recorded it (pid and start time), then released
// once runc has joined it.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { BerthNative, NativeError } from '../../native';
import { describeError, failedPrecondition, internal } from '../errors';
import type { OciRuntime } from '../oci/oci-runtime';
import { readInitProcess } from '../oci/runtime-state';
import type { PodSandboxView } from '../sandbox/sandbox-types';

const ESRCH = 3;
const TARGET_FIELD = 'config.linux.security_context.namespace_options.target_id';

/** The running container whose PID namespace a TARGET-mode container joins. */
export interface PidNamespaceTarget {
  containerId: string;
  pid: number;
  runtime: OciRuntime;
}

/** Where a create pins its target's PID namespace (inside its own bundle, released after create). */
export function targetPinPath(bundleDir: string): string {
  return join(bundleDir, 'target-pidns');
}

/** Throws FAILED_PRECONDITION unless the pod's pin still holds its namespace and the holder still runs in it. */
export function checkPodPidNamespace(native: BerthNative, pod: PodSandboxView): void {
  const ns = pod.pidNamespace;
  if (!ns) return;
  let held: { type: string; inode: number };
  try {
    held = native.namespaceIdentity(ns.path);
  } catch (err) {
    throw failedPrecondition(`pod sandbox ${pod.id}: its PID namespace pin ${ns.path} is gone (${describeError(err)})`);
  }
  if (held.type !== 'pid' || held.inode !== ns.inode) {
    throw failedPrecondition(`pod sandbox ${pod.id}: ${ns.path} no longer holds the pod's PID namespace`);
  }
  let holderInode: number | undefined;
  try {
    holderInode = statSync(`/proc/${ns.holderPid}/ns/pid`).ino;
  } catch {
    // gone
  }
  if (holderInode !== ns.inode) {
    throw failedPrecondition(`pod sandbox ${pod.id}: the process holding its PID namespace (pid ${ns.holderPid}) has exited; recreate the pod`);
  }
}

/** Pins the target's PID namespace at pinPath; FAILED_PRECONDITION when the target's init is not what its pid now names. */
export function pinTargetPidNamespace(native: BerthNative, target: PidNamespaceTarget, pinPath: string): void {
  const recorded = readInitProcess(target.runtime, target.containerId);
  if (!recorded || recorded.pid !== target.pid) {
    throw failedPrecondition(`${TARGET_FIELD}: container ${target.containerId} has no init process its runtime records as pid ${target.pid}`);
  }
  let pinned: { startTime: string };
  try {
    pinned = native.pinPidNamespace(target.pid, pinPath);
  } catch (err) {
    if ((err as NativeError).errno === ESRCH) throw failedPrecondition(`${TARGET_FIELD}: container ${target.containerId} is not running`);
    throw internal(`pinning the PID namespace of container ${target.containerId}: ${describeError(err)}`);
  }
  if (pinned.startTime !== recorded.startTime) {
    releaseTargetPin(native, pinPath);
    throw failedPrecondition(`${TARGET_FIELD}: container ${target.containerId} is not running (its pid ${target.pid} now names another process)`);
  }
}

/** Drops a target pin; absent is fine, and a failure is left for the bundle's removal to report (it never removes a mount point). */
export function releaseTargetPin(native: BerthNative, pinPath: string): void {
  try {
    native.unpinNamespace(pinPath);
  } catch {
    // still mounted: undoContainer's removal of the bundle fails and is retried
  }
}
