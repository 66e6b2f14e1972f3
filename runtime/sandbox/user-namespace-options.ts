// A pod's user namespace as the kubelet asks for it (KEP-127, hostUsers: false):
// NamespaceOption.userns_options in mode POD with one uid and one gid mapping
// that maps the container's root. NODE (or no options) is the host's user
// namespace; CONTAINER and TARGET are not defined for user namespaces.
import type { UserNamespace__Output } from '../../cri-proto/generated/runtime/v1/UserNamespace';
import type { IdMapping } from '../../native';
import { invalidArgument } from '../errors';
import type { PodNamespaceModes } from './sandbox-types';

/** The pod's mappings: container ids [0, size) are host ids [hostId, hostId + size). */
export interface PodIdMappings {
  uids: IdMapping;
  gids: IdMapping;
}

const MAX_ID = 2 ** 32;

/** undefined: the host's user namespace. Throws INVALID_ARGUMENT naming the field. */
export function validateUsernsOptions(options: UserNamespace__Output | null | undefined, modes: PodNamespaceModes | undefined, field: string): PodIdMappings | undefined {
  if (!options) return undefined;
  const { mode } = options;
  if (mode === 'NODE') {
    if (options.uids.length > 0 || options.gids.length > 0) throw invalidArgument(`${field}: mode NODE takes no uids or gids mappings`);
    return undefined;
  }
  if (mode !== 'POD') throw invalidArgument(`${field}.mode: ${mode} is not a user namespace mode (POD or NODE)`);
  if (modes) {
    for (const kind of ['network', 'ipc', 'pid'] as const) {
      if (modes[kind] === 'NODE') throw invalidArgument(`${field}: a pod with its own user namespace cannot use the host's ${kind === 'ipc' ? 'IPC' : kind.toUpperCase()} namespace (namespace_options.${kind} is NODE)`);
    }
  }
  return { uids: oneMapping(options.uids, `${field}.uids`), gids: oneMapping(options.gids, `${field}.gids`) };
}

function oneMapping(list: UserNamespace__Output['uids'], field: string): IdMapping {
  if (list.length !== 1) throw invalidArgument(`${field}: mode POD takes exactly one mapping, got ${list.length}`);
  const m = list[0];
  if (m.container_id !== 0) throw invalidArgument(`${field}[0].container_id: ${m.container_id}; the mapping must start at container id 0 (the container's root must be mapped)`);
  if (!(m.length > 0)) throw invalidArgument(`${field}[0].length: must be above 0`);
  if (m.host_id + m.length > MAX_ID) throw invalidArgument(`${field}[0]: host ids ${m.host_id}+${m.length} run past 2^32`);
  return { containerId: 0, hostId: m.host_id, size: m.length };
}

/** Whether two validated mappings are the same (a container's options must repeat its pod's). */
export function sameIdMappings(a: PodIdMappings | undefined, b: PodIdMappings | undefined): boolean {
  if (!a || !b) return a === b;
  const same = (x: IdMapping, y: IdMapping) => x.containerId === y.containerId && x.hostId === y.hostId && x.size === y.size;
  return same(a.uids, b.uids) && same(a.gids, b.gids);
}
