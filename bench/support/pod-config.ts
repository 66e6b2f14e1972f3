// Pod and container configs the benchmarks send, shaped like a kubelet's
// (metadata, log directory, cgroup parent, namespaces) but minimal.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { ClientRequest } from '../../test/support/cri-client';
import type { BenchRuntime } from './bench-env';

export type PodSandboxConfig = NonNullable<ClientRequest<'RunPodSandbox'>['config']>;
export type ContainerConfig = NonNullable<ClientRequest<'CreateContainer'>['config']>;

export function podConfig(runtime: BenchRuntime, name: string): PodSandboxConfig {
  const uid = randomUUID();
  return {
    metadata: { name, uid, namespace: 'berth-bench', attempt: 0 },
    hostname: name,
    log_directory: join(runtime.logRoot, uid),
    labels: { 'berth-bench': 'true' },
    annotations: {},
    linux: {
      cgroup_parent: `${runtime.cgroupParent}/pod${uid}`,
      security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  };
}

export function sleepContainerConfig(name: string, image: string): ContainerConfig {
  return {
    metadata: { name, attempt: 0 },
    image: { image },
    command: ['/bin/sleep', '3600'],
    log_path: `${name}.log`,
    labels: { 'berth-bench': 'true' },
    linux: { resources: {}, security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
  };
}
