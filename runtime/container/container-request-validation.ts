// Every check a container request gets before anything exists on the host,
// in one place and one wording: the model calls these once per request, the
// shim only maps what they throw. Checks that need the host (a host path that
// must exist, a log path through a symlink) are made where the host is read.
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { invalidArgument } from '../errors';
import type { HostFacts } from '../host/host-facts';
import { sameIdMappings, validateUsernsOptions, type PodIdMappings } from '../sandbox/user-namespace-options';
import { int64Field } from './cri-int64';
import type { OciResources } from './oci-spec-types';
import { ociResources } from './spec-resources';

const UID_MAX = 0xffffffff;

/** CreateContainer as the model takes it. */
export interface CreateContainerRequest {
  podSandboxId: string;
  config: ContainerConfig__Output | null;
  /** The pod's config as the kubelet sends it again with each create. */
  sandboxConfig: PodSandboxConfig__Output | null;
}

/** A container id (or unique prefix) a request names. */
export function checkContainerId(idOrPrefix: string): void {
  if (!idOrPrefix) throw invalidArgument('container_id: is empty');
}

/** Longest file name and path the kernel takes (bytes): longer ones fail deep in a mkdir or an open. */
const NAME_MAX = 255;
const PATH_MAX = 4096;

/**
 * The first string in `value` (its fields, items and map keys, walked)
 * holding a NUL byte, as a dotted field path: no path, argument or
 * environment variable can carry one (Node refuses it, execve cuts it).
 */
function fieldWithNul(value: unknown, field: string): string | undefined {
  if (typeof value === 'string') return value.includes('\0') ? field : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = fieldWithNul(value[i], `${field}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (Buffer.isBuffer(value)) return value.includes(0) ? field : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, item] of Object.entries(value)) {
    if (key.includes('\0')) return `${field} key ${JSON.stringify(key)}`;
    const found = fieldWithNul(item, `${field}.${key}`);
    if (found) return found;
  }
  return undefined;
}

/** A path berth or the runtime will make or open on the host: every name within NAME_MAX bytes, the whole within PATH_MAX. */
export function checkPathLengths(path: string, field: string): void {
  if (Buffer.byteLength(path) >= PATH_MAX) throw invalidArgument(`${field}: is ${Buffer.byteLength(path)} bytes long; a path may have at most ${PATH_MAX - 1}`);
  const long = path.split('/').find((part) => Buffer.byteLength(part) > NAME_MAX);
  if (long !== undefined) throw invalidArgument(`${field}: the name "${long.slice(0, 32)}..." is ${Buffer.byteLength(long)} bytes long; a file name may have at most ${NAME_MAX}`);
}

/**
 * A path the caller will look for where berth writes it: U+FFFD stands for
 * bytes that were not UTF-8 on the wire, so the file would not be where the
 * caller thinks.
 */
function checkWrittenPath(path: string, field: string): void {
  checkPathLengths(path, field);
  if (path.includes('\uFFFD')) throw invalidArgument(`${field}: is not valid UTF-8`);
}

/** Everything CreateContainer refuses before anything exists on the host; the config to create. */
export function validateCreateContainer(request: CreateContainerRequest, host: Pick<HostFacts, 'cgroup'>): ContainerConfig__Output {
  const { config, sandboxConfig } = request;
  if (!request.podSandboxId) throw invalidArgument('pod_sandbox_id: is empty');
  if (!config) throw invalidArgument('config: is missing');
  if (!sandboxConfig) throw invalidArgument('sandbox_config: is missing');
  const withNul = fieldWithNul(config, 'config') ?? fieldWithNul(sandboxConfig, 'sandbox_config');
  if (withNul) throw invalidArgument(`${withNul}: contains a NUL byte`);
  if (!config.metadata) throw invalidArgument('config.metadata: is missing');
  if (!config.metadata.name) throw invalidArgument('config.metadata.name: is empty');
  if (!config.image) throw invalidArgument('config.image: is missing');
  if (!config.image.image) throw invalidArgument('config.image.image: is empty');
  const logDir = sandboxConfig.log_directory ?? '';
  if (logDir && !logDir.startsWith('/')) throw invalidArgument(`sandbox_config.log_directory: "${logDir}" must be absolute`);
  if (logDir.split('/').includes('..')) throw invalidArgument(`sandbox_config.log_directory: "${logDir}" may not contain ".."`);
  checkWrittenPath(logDir, 'sandbox_config.log_directory');
  if (config.log_path) {
    logPathParts(config.log_path);
    checkWrittenPath(config.log_path, 'config.log_path');
    if (logDir) checkPathLengths(`${logDir}/${config.log_path}`, 'sandbox_config.log_directory joined with config.log_path');
  }
  (config.envs ?? []).forEach((e, i) => {
    if (!e.key) throw invalidArgument(`config.envs[${i}].key: is empty`);
    if (e.key.includes('=')) throw invalidArgument(`config.envs[${i}].key: "${e.key}" contains "="`);
  });
  if (config.working_dir) {
    if (!config.working_dir.startsWith('/')) throw invalidArgument(`config.working_dir: "${config.working_dir}" must be absolute`);
    checkPathLengths(config.working_dir, 'config.working_dir');
  }
  // Absent linux means the defaults (crictl and critest send none), as containerd takes it.
  const linux = config.linux ?? { resources: null, security_context: null };
  const sc = linux.security_context;
  if (sc?.run_as_user) int64Field(sc.run_as_user.value, 'config.linux.security_context.run_as_user', 0, UID_MAX);
  if (sc?.run_as_group) int64Field(sc.run_as_group.value, 'config.linux.security_context.run_as_group', 0, UID_MAX);
  (sc?.supplemental_groups ?? []).forEach((g, i) => int64Field(g, `config.linux.security_context.supplemental_groups[${i}]`, 0, UID_MAX));
  const groupsPolicy: unknown = sc?.supplemental_groups_policy ?? 'Merge';
  if (groupsPolicy !== 'Merge' && groupsPolicy !== 'Strict') {
    throw invalidArgument(`config.linux.security_context.supplemental_groups_policy: ${JSON.stringify(groupsPolicy)} is neither Merge nor Strict`);
  }
  if (sc?.run_as_group && !sc.run_as_user && !sc.run_as_username) {
    throw invalidArgument('config.linux.security_context.run_as_group: is set without run_as_user or run_as_username');
  }
  int64Field(linux.resources?.oom_score_adj, 'config.linux.resources.oom_score_adj', -1000, 1000);
  ociResources(linux.resources, host, 'config.linux.resources');
  (config.mounts ?? []).forEach((m, i) => {
    if (!m.container_path.startsWith('/')) throw invalidArgument(`config.mounts[${i}].container_path: "${m.container_path}" must be absolute`);
    if (!m.host_path && !m.image?.image) throw invalidArgument(`config.mounts[${i}].host_path: is empty`);
    checkPathLengths(m.container_path, `config.mounts[${i}].container_path`);
    checkPathLengths(m.host_path, `config.mounts[${i}].host_path`);
  });
  (config.devices ?? []).forEach((d, i) => {
    if (!d.host_path) throw invalidArgument(`config.devices[${i}].host_path: is empty`);
    checkPathLengths(d.host_path, `config.devices[${i}].host_path`);
    checkPathLengths(d.container_path, `config.devices[${i}].container_path`);
    if (d.permissions && !/^[rwm]+$/.test(d.permissions)) throw invalidArgument(`config.devices[${i}].permissions: "${d.permissions}" must be made of r, w and m`);
  });
  if (sc?.namespace_options?.pid === 'TARGET' && !sc.namespace_options.target_id) {
    throw invalidArgument('config.linux.security_context.namespace_options.target_id: is empty for pid mode TARGET');
  }
  return config;
}

/**
 * A container's user namespace options repeat its pod's (critest and the kubelet send
 * them): POD with the pod's own mappings, or NODE for a pod in the host's.
 */
export function checkContainerUserns(config: ContainerConfig__Output, podUserns: PodIdMappings | undefined): void {
  const field = 'config.linux.security_context.namespace_options.userns_options';
  const options = config.linux?.security_context?.namespace_options?.userns_options;
  if (!options) return;
  if (!sameIdMappings(validateUsernsOptions(options, undefined, field), podUserns)) {
    throw invalidArgument(`${field}: must be the pod's (${podUserns ? `mode POD with its mappings` : 'mode NODE: the pod uses the host user namespace'})`);
  }
}

/** The components of a container's log path below the pod's log directory: relative, never climbing out. */
export function logPathParts(logPath: string): string[] {
  if (logPath.startsWith('/')) throw invalidArgument(`config.log_path: "${logPath}" must be relative to the pod's log_directory`);
  const parts = logPath.split('/').filter((p) => p && p !== '.');
  if (parts.length === 0) throw invalidArgument('config.log_path: is empty');
  if (parts.includes('..')) throw invalidArgument(`config.log_path: "${logPath}" leaves the pod's log_directory`);
  return parts;
}

/** UpdateContainerResources' resources, and the same as the OCI runtime takes them. */
export function validateResourcesUpdate(
  resources: LinuxContainerResources__Output | null,
  host: Pick<HostFacts, 'cgroup'>,
): { resources: LinuxContainerResources__Output; oci: OciResources } {
  if (!resources) throw invalidArgument('linux: is missing');
  return { resources, oci: ociResources(resources, host, 'linux') };
}

/** ExecSync's command. */
export function checkExecCommand(cmd: string[]): void {
  if (cmd.length === 0) throw invalidArgument('cmd: is empty');
}
