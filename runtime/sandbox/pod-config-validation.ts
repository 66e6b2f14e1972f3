// Checks a pod sandbox request before anything is created, naming the field
// that is wrong, so the kubelet (or a person with crictl) sees what to fix.
// The one place pod requests are validated: the model calls it, the shim does not.
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import type { RuntimeConfig } from '../../cni/cni-types';
import type { BerthConfig, CgroupDriver } from '../config';
import { invalidArgument } from '../errors';
import { isValidHostname } from './pod-files';
import { bandwidthOf } from './pod-network';
import type { NamespaceModeName, PodNamespaceModes } from './sandbox-types';
import { resolvePodSysctls, type PodSysctl } from './sysctls';
import { validateUsernsOptions, type PodIdMappings } from './user-namespace-options';

export interface ValidatedPodConfig {
  config: PodSandboxConfig__Output;
  modes: PodNamespaceModes;
  sysctls: PodSysctl[];
  /** From the kubernetes.io/{ingress,egress}-bandwidth annotations. */
  bandwidth: RuntimeConfig['bandwidth'] | undefined;
  /** The pod's own user namespace (userns_options mode POD); undefined: the host's. */
  userns: PodIdMappings | undefined;
}

export interface ValidatedRunPodSandbox extends ValidatedPodConfig {
  /** The runtime handler asked for, or the configured default. */
  runtimeHandler: string;
}

/** An id the kubelet passes to a pod call: present (unknown ids are the lookup's NOT_FOUND). */
export function requirePodSandboxId(id: string): string {
  if (!id) throw invalidArgument('pod_sandbox_id: is empty');
  return id;
}

/** RunPodSandbox's request: the pod config, and a runtime handler berthd has. */
export function validateRunPodSandbox(
  config: PodSandboxConfig__Output | null | undefined,
  runtimeHandler: string,
  berth: Pick<BerthConfig, 'cgroup' | 'oci'>,
): ValidatedRunPodSandbox {
  const validated = validatePodSandboxConfig(config, berth.cgroup.driver);
  const handler = runtimeHandler || berth.oci.default_runtime;
  if (!berth.oci.runtimes[handler]) {
    const known = Object.keys(berth.oci.runtimes).join(', ');
    throw invalidArgument(`runtime_handler: no runtime for "${handler}" is configured (configured: ${known})`);
  }
  return { ...validated, runtimeHandler: handler };
}

const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);

function noControlChars(field: string, value: string): void {
  if (/[\n\r\0]/.test(value)) throw invalidArgument(`${field}: ${JSON.stringify(value)} may not contain a newline or NUL`);
}

export function validatePodSandboxConfig(
  config: PodSandboxConfig__Output | null | undefined,
  cgroupDriver: CgroupDriver,
): ValidatedPodConfig {
  if (!config) throw invalidArgument('config: missing');
  const meta = config.metadata;
  if (!meta) throw invalidArgument('config.metadata: missing');
  for (const key of ['name', 'namespace', 'uid'] as const) {
    if (!meta[key]) throw invalidArgument(`config.metadata.${key}: is empty`);
    noControlChars(`config.metadata.${key}`, meta[key]);
    if (meta[key].length > 253) throw invalidArgument(`config.metadata.${key}: longer than 253 characters`);
  }
  if (config.hostname && !isValidHostname(config.hostname)) {
    throw invalidArgument(`config.hostname: ${JSON.stringify(config.hostname)} is not a valid host name`);
  }
  if (config.log_directory) {
    if (!isAbsolute(config.log_directory)) throw invalidArgument(`config.log_directory: ${JSON.stringify(config.log_directory)} must be an absolute path`);
    noControlChars('config.log_directory', config.log_directory);
    if (config.log_directory.split('/').includes('..')) throw invalidArgument(`config.log_directory: ${JSON.stringify(config.log_directory)} may not contain ".."`);
  }
  const dns = config.dns_config;
  if (dns) {
    dns.servers.forEach((s, i) => {
      if (!isIP(s)) throw invalidArgument(`config.dns_config.servers[${i}]: ${JSON.stringify(s)} is not an IP address`);
    });
    dns.searches.forEach((s, i) => {
      if (!/^[A-Za-z0-9_.-]+$/.test(s) || s.length > 253) throw invalidArgument(`config.dns_config.searches[${i}]: ${JSON.stringify(s)} is not a domain`);
    });
    dns.options.forEach((s, i) => {
      if (!/^[A-Za-z0-9_:.-]+$/.test(s)) throw invalidArgument(`config.dns_config.options[${i}]: ${JSON.stringify(s)} is not a resolver option`);
    });
  }
  config.port_mappings.forEach((p, i) => {
    const field = `config.port_mappings[${i}]`;
    if (!PROTOCOLS.has(p.protocol)) throw invalidArgument(`${field}.protocol: unknown protocol ${JSON.stringify(p.protocol)}`);
    if (!(p.container_port >= 1 && p.container_port <= 65535)) throw invalidArgument(`${field}.container_port: ${p.container_port} is not a port`);
    if (!(p.host_port >= 0 && p.host_port <= 65535)) throw invalidArgument(`${field}.host_port: ${p.host_port} is not a port`);
    if (p.host_ip && !isIP(p.host_ip)) throw invalidArgument(`${field}.host_ip: ${JSON.stringify(p.host_ip)} is not an IP address`);
  });
  for (const [field, map] of [['config.labels', config.labels], ['config.annotations', config.annotations]] as const) {
    for (const key of Object.keys(map)) if (key === '') throw invalidArgument(`${field}: empty key`);
  }

  const linux = config.linux;
  const ns = linux?.security_context?.namespace_options;
  const modes: PodNamespaceModes = {
    network: (ns?.network ?? 'POD') as NamespaceModeName,
    pid: (ns?.pid ?? 'POD') as NamespaceModeName,
    ipc: (ns?.ipc ?? 'POD') as NamespaceModeName,
  };
  // Pid defaults to CONTAINER when the kubelet sends no namespace options (its own default).
  if (!ns) modes.pid = 'CONTAINER';
  for (const kind of ['network', 'ipc'] as const) {
    if (modes[kind] !== 'POD' && modes[kind] !== 'NODE') {
      throw invalidArgument(`config.linux.security_context.namespace_options.${kind}: ${modes[kind]} is not a pod namespace mode (POD or NODE)`);
    }
  }
  if (modes.pid === 'TARGET') throw invalidArgument('config.linux.security_context.namespace_options.pid: TARGET applies to containers, not pods');
  const userns = validateUsernsOptions(ns?.userns_options, modes, 'config.linux.security_context.namespace_options.userns_options');

  const sysctls = resolvePodSysctls(linux?.sysctls ?? {});
  for (const s of sysctls) {
    if (s.namespace === 'net' && modes.network === 'NODE') throw invalidArgument(`config.linux.sysctls: ${s.name} needs the pod's own network namespace (host network requested)`);
    if (s.namespace === 'ipc' && modes.ipc === 'NODE') throw invalidArgument(`config.linux.sysctls: ${s.name} needs the pod's own IPC namespace (host IPC requested)`);
    if (s.namespace === 'uts') throw invalidArgument(`config.linux.sysctls: ${s.name} is set through config.hostname`);
  }

  const parent = linux?.cgroup_parent ?? '';
  if (parent) {
    noControlChars('config.linux.cgroup_parent', parent);
    const isSlice = !parent.includes('/') && parent.endsWith('.slice');
    if (cgroupDriver === 'systemd' && !isSlice) throw invalidArgument(`config.linux.cgroup_parent: ${JSON.stringify(parent)} is not a systemd slice (cgroup driver is systemd)`);
    if (cgroupDriver === 'cgroupfs' && (isSlice || !parent.startsWith('/'))) {
      throw invalidArgument(`config.linux.cgroup_parent: ${JSON.stringify(parent)} must be an absolute cgroupfs path (cgroup driver is cgroupfs)`);
    }
    if (parent.split('/').includes('..')) throw invalidArgument('config.linux.cgroup_parent: may not contain ".."');
  }
  return { config, modes, sysctls, bandwidth: bandwidthOf(config.annotations), userns };
}

/** The key that makes a pod's metadata unique among live sandboxes. */
export function podNameKey(config: PodSandboxConfig__Output): string {
  const m = config.metadata!;
  return JSON.stringify([m.name, m.namespace, m.uid, m.attempt]);
}
