// The OCI runtime spec (config.json) of a container, built from the CRI
// ContainerConfig, the image's config and the pod: the process
// (process-spec.ts), mounts (spec-mounts.ts), devices (spec-devices.ts),
// namespaces (spec-namespaces.ts), resources (spec-resources.ts) and seccomp
// (seccomp-profile.ts) put together. Pure apart from reading host device nodes
// and /proc/self/mountinfo (the rootfs' user database is read before), so it is unit-tested
// with plain objects. The request was validated before (container-request-validation.ts).
import { invalidArgument } from '../errors';
import type { BuiltSpec, OciSpec, SpecInput } from './oci-spec-types';
import { containerProcess, stopSignalOf } from './process-spec';
import { requestedSeccompProfile } from './seccomp-profile';
import { filterAnnotations } from './spec-annotations';
import { specDevices } from './spec-devices';
import { specMounts } from './spec-mounts';
import { specNamespaces } from './spec-namespaces';
import { cgroupsPathFor, ociResources } from './spec-resources';

export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export function buildSpec(input: SpecInput): BuiltSpec {
  const { config, sandbox, image, host } = input;
  const sc = config.linux?.security_context ?? null;
  const privileged = sc?.privileged ?? false;
  if (privileged && !(sandbox.config.linux?.security_context?.privileged ?? false)) {
    throw invalidArgument('config.linux.security_context.privileged: a privileged container needs a privileged pod sandbox');
  }

  const { process, user, capabilities, warnings } = containerProcess(input, sc, privileged);
  const { mounts, rootfsPropagation } = specMounts(input, sc, privileged);
  const devices = specDevices(config, privileged);
  const resources = ociResources(config.linux?.resources, host, 'config.linux.resources');
  resources.devices = devices.rules;
  const namespaces = specNamespaces(input);
  const seccomp = privileged ? undefined : requestedSeccompProfile(sc, capabilities, input.seccompDefaultProfilePath);

  const requested = filterAnnotations(config.annotations ?? {}, input.allowedAnnotations ?? []);
  if (requested.dropped.length > 0) {
    warnings.push(`annotations ${requested.dropped.join(', ')} left out of config.json: the runtime acts on them and oci.runtimes.<handler>.allowed_annotations does not allow them`);
  }
  const annotations: Record<string, string> = {
    ...requested.kept,
    'io.kubernetes.cri.container-type': 'container',
    'io.kubernetes.cri.sandbox-id': sandbox.id,
    'io.kubernetes.cri.container-name': config.metadata?.name ?? '',
    'io.kubernetes.cri.image-name': config.image?.image ?? '',
  };

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process,
    root: { path: input.rootfs, readonly: sc?.readonly_rootfs ?? false },
    mounts,
    annotations,
    linux: {
      resources,
      cgroupsPath: cgroupsPathFor(input.cgroupDriver, sandbox.cgroupParent, input.id),
      namespaces,
      devices: devices.devices,
      maskedPaths: privileged ? [] : sc?.masked_paths?.length ? [...sc.masked_paths] : DEFAULT_MASKED_PATHS,
      readonlyPaths: privileged ? [] : sc?.readonly_paths?.length ? [...sc.readonly_paths] : DEFAULT_READONLY_PATHS,
    },
  };
  if (seccomp) spec.linux.seccomp = seccomp;
  const sysctls = sandbox.config.linux?.sysctls ?? {};
  if (Object.keys(sysctls).length > 0) spec.linux.sysctl = { ...sysctls };
  if (rootfsPropagation) spec.linux.rootfsPropagation = rootfsPropagation;
  const userns = sandbox.userNamespace;
  if (userns) {
    spec.linux.uidMappings = [{ containerID: userns.uids.containerId, hostID: userns.uids.hostId, size: userns.uids.size }];
    spec.linux.gidMappings = [{ containerID: userns.gids.containerId, hostID: userns.gids.hostId, size: userns.gids.size }];
  }
  return { spec, user, stopSignal: stopSignalOf(config, image), warnings };
}
