// The container a restore creates, as a CRI ContainerConfig built from the
// CreateContainer request and the checkpoint, in the way CRI-O builds it: the
// image is the one the checkpointed container ran (config.dump), the process
// is the checkpoint's (spec.dump: criu restores its memory, and exec and
// status read the rest), the request gives the name, labels, annotations,
// log path, resources and security context. Masked and read-only paths are
// the checkpoint's, as criu restores the mounts that implement them. Every
// volume the checkpointed container had must be in the request (a checkpoint
// never mounts a host path its restorer did not ask for), and only those are
// mounted: criu restores the mount table it saw.
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerSecurityContext__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerSecurityContext';
import { invalidArgument } from '../errors';
import type { CheckpointedContainer } from './checkpoint-layout';

/** What a restore reads of spec.dump (an OCI runtime spec). */
export interface CheckpointedSpec {
  process?: { args?: string[]; env?: string[]; cwd?: string; terminal?: boolean; user?: { uid?: number; gid?: number } };
  mounts?: { destination?: string; type?: string; source?: string }[];
  linux?: { maskedPaths?: string[]; readonlyPaths?: string[] };
  annotations?: Record<string, string>;
}

/** Mounts the pod (or the runtime) provides at these paths: a restore gets the new pod's. */
const POD_PROVIDED = new Set([
  '/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/dev/shm', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname',
]);

/** The image a checkpoint was taken from: its id when config.dump has it (a tag may have moved since), else its name. */
export function checkpointedImage(container: CheckpointedContainer): string {
  const image = container.rootfsImageRef || container.rootfsImageName || container.rootfsImage || '';
  if (typeof image !== 'string' || !image) throw invalidArgument('config.image.image: the checkpoint archive names no image (config.dump has no rootfsImageRef or rootfsImageName)');
  return image;
}

function strings(value: unknown, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw invalidArgument(`config.image.image: the checkpoint's spec.dump has a malformed ${what}`);
  return value as string[];
}

function emptySecurityContext(): LinuxContainerSecurityContext__Output {
  return {
    capabilities: null, privileged: false, namespace_options: null, selinux_options: null, run_as_user: null, run_as_username: '',
    readonly_rootfs: false, supplemental_groups: [], apparmor_profile: '', seccomp_profile_path: '', no_new_privs: false, run_as_group: null,
    masked_paths: [], readonly_paths: [], seccomp: null, apparmor: null, supplemental_groups_policy: 'Merge',
  };
}

/** The ContainerConfig of the restored container; INVALID_ARGUMENT naming config.mounts when a volume of the checkpoint is not requested. */
export function restoredContainerConfig(request: ContainerConfig__Output, container: CheckpointedContainer, spec: CheckpointedSpec, archive: string): ContainerConfig__Output {
  const process = spec.process ?? {};
  const args = strings(process.args, 'process.args');
  if (args.length === 0) throw invalidArgument('config.image.image: the checkpoint\'s spec.dump has no process.args');
  const envs = strings(process.env, 'process.env').map((entry) => {
    const eq = entry.indexOf('=');
    return { key: eq < 0 ? entry : entry.slice(0, eq), value: Buffer.from(eq < 0 ? '' : entry.slice(eq + 1)) };
  });
  const dumpMounts = Array.isArray(spec.mounts) ? spec.mounts : [];
  const destinations = new Set(dumpMounts.map((m) => m.destination).filter((d): d is string => typeof d === 'string'));
  const requested = new Set(request.mounts.map((m) => m.container_path));
  const missing = dumpMounts
    .filter((m) => m.type === 'bind' && typeof m.destination === 'string' && !POD_PROVIDED.has(m.destination) && !requested.has(m.destination))
    .map((m) => m.destination as string);
  if (missing.length > 0) {
    throw invalidArgument(`config.mounts: restoring ${archive} needs the volumes its container had, at ${missing.join(', ')}`);
  }
  const linux = request.linux ?? { resources: null, security_context: null };
  const securityContext = { ...(linux.security_context ?? emptySecurityContext()) };
  const masked = strings(spec.linux?.maskedPaths, 'linux.maskedPaths');
  const readonly = strings(spec.linux?.readonlyPaths, 'linux.readonlyPaths');
  if (spec.linux?.maskedPaths !== undefined) securityContext.masked_paths = masked;
  if (spec.linux?.readonlyPaths !== undefined) securityContext.readonly_paths = readonly;
  const user = process.user;
  if (!securityContext.run_as_user && !securityContext.run_as_username && typeof user?.uid === 'number') {
    securityContext.run_as_user = { value: String(user.uid) };
    if (!securityContext.run_as_group && typeof user.gid === 'number') securityContext.run_as_group = { value: String(user.gid) };
  }
  return {
    ...request,
    image: { ...(request.image ?? { annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' }), image: checkpointedImage(container), user_specified_image: archive },
    command: args,
    args: [],
    working_dir: typeof process.cwd === 'string' ? process.cwd : '',
    envs,
    tty: process.terminal === true,
    mounts: request.mounts.filter((m) => destinations.has(m.container_path)),
    linux: { ...linux, security_context: securityContext },
  };
}
