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

/** Everything CreateContainer refuses before anything exists on the host; the config to create. */
export function validateCreateContainer(request: CreateContainerRequest, host: Pick<HostFacts, 'cgroup'>): ContainerConfig__Output {
  const { config, sandboxConfig } = request;
  if (!request.podSandboxId) throw invalidArgument('pod_sandbox_id: is empty');
  if (!config) throw invalidArgument('config: is missing');
  if (!sandboxConfig) throw invalidArgument('sandbox_config: is missing');
  if (!config.metadata) throw invalidArgument('config.metadata: is missing');
  if (!config.metadata.name) throw invalidArgument('config.metadata.name: is empty');
  if (!config.image) throw invalidArgument('config.image: is missing');
  if (!config.image.image) throw invalidArgument('config.image.image: is empty');
  const logDir = sandboxConfig.log_directory ?? '';
  if (logDir && !logDir.startsWith('/')) throw invalidArgument(`sandbox_config.log_directory: "${logDir}" must be absolute`);
  if (logDir.split('/').includes('..')) throw invalidArgument(`sandbox_config.log_directory: "${logDir}" may not contain ".."`);
  if (config.log_path) logPathParts(config.log_path);
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
  });
  (config.devices ?? []).forEach((d, i) => {
    if (!d.host_path) throw invalidArgument(`config.devices[${i}].host_path: is empty`);
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
