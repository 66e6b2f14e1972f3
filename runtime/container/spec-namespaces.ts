// The namespaces a container joins or gets: the pod's pinned user (hostUsers:
// false), network, IPC and UTS namespaces, a PID namespace by the request's
// mode, and its own mount (and, on cgroup v2, cgroup) namespace. Namespaces
// the container gets are created inside the pod's user namespace, so they
// belong to it.
import { invalidArgument } from '../errors';
import type { OciNamespace, OciSpec, SpecInput } from './oci-spec-types';

export function specNamespaces(input: Pick<SpecInput, 'sandbox' | 'config' | 'targetPidNsPath' | 'host'>): OciNamespace[] {
  const { sandbox, config } = input;
  const out: OciNamespace[] = [{ type: 'mount' }];
  if (sandbox.userNamespace) out.push({ type: 'user', path: sandbox.userNamespace.path });
  if (sandbox.netnsPath) out.push({ type: 'network', path: sandbox.netnsPath });
  if (sandbox.ipcnsPath) out.push({ type: 'ipc', path: sandbox.ipcnsPath });
  if (sandbox.utsnsPath) out.push({ type: 'uts', path: sandbox.utsnsPath });
  const pidMode = config.linux?.security_context?.namespace_options?.pid ?? 'CONTAINER';
  switch (pidMode) {
    case 'NODE':
      break;
    case 'POD':
      out.push(sandbox.pidnsPath ? { type: 'pid', path: sandbox.pidnsPath } : { type: 'pid' });
      break;
    case 'TARGET':
      if (!input.targetPidNsPath) {
        throw invalidArgument('config.linux.security_context.namespace_options.target_id: the target container is not running');
      }
      out.push({ type: 'pid', path: input.targetPidNsPath });
      break;
    default:
      out.push({ type: 'pid' });
  }
  if (input.host.cgroup.mode === 'v2') out.push({ type: 'cgroup' });
  return out;
}

/**
 * Whether the container has a PID namespace of its own (mode CONTAINER): its init is
 * that namespace's pid 1, and the kernel kills every other process in it when that
 * init dies. A pod's, a target's or the host's namespace is shared: it outlives the
 * container's init. A spec not built yet counts as shared.
 */
export function ownsPidNamespace(spec: Pick<OciSpec, 'linux'> | undefined): boolean {
  return spec?.linux.namespaces.some((ns) => ns.type === 'pid' && !ns.path) ?? false;
}
