// The pods berthd knows: one record per row of the store, kept in memory so
// lookups (the kubelet polls every second) never touch SQLite, and written
// through to the store on every change so a restart finds the same pods.
import { join } from 'node:path';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { IdIndex } from '../common/id-index';
import { IdLocks } from '../common/id-locks';
import { failedPrecondition, notFound } from '../errors';
import type { PodNamespaceModes, PodSandboxView, SandboxLookup } from './sandbox-types';
import type { SandboxRow, SandboxStore } from './sandbox-store';
import { validateUsernsOptions, type PodIdMappings } from './user-namespace-options';

export interface SandboxRecord {
  row: SandboxRow;
  config: PodSandboxConfig__Output;
  modes: PodNamespaceModes;
  ips: string[];
  /** The pod's id mappings when it has its own user namespace. */
  userns: PodIdMappings | undefined;
}

/** Pods being made, or whose failed run is still being undone, are not found by id. */
function isVisible(record: SandboxRecord): boolean {
  return record.row.phase === 'ready' || record.row.phase === 'stopped';
}

export class SandboxRecords implements SandboxLookup {
  readonly index = new IdIndex<SandboxRecord>({ noun: 'pod sandbox', visible: isVisible });
  /** One lock per pod id, for every verb that changes a pod (and, shared, for what must not race its removal). */
  readonly locks = new IdLocks();

  constructor(readonly store: SandboxStore) {
    for (const row of store.all()) this.index.set(row.id, recordOf(row));
  }

  /** By full id or unique id prefix; undefined when absent or ambiguous. */
  get(idOrPrefix: string): PodSandboxView | undefined {
    const record = this.index.find(idOrPrefix);
    return record ? viewOf(record) : undefined;
  }

  list(): PodSandboxView[] {
    return this.index.visible().map(viewOf);
  }

  /** See SandboxLookup.whileReady: a container create holds its pod so the pod's removal waits for it. */
  async whileReady<T>(idOrPrefix: string, work: (pod: PodSandboxView) => Promise<T>): Promise<T> {
    const found = this.index.find(idOrPrefix);
    if (!found) throw notFound(`pod sandbox "${idOrPrefix}" not found`);
    return this.locks.shared(found.row.id, async () => {
      // A stop or removal may have run while this waited for the hold.
      if (!this.isCurrent(found)) throw notFound(`pod sandbox ${found.row.id} was removed`);
      if (found.row.phase !== 'ready') throw failedPrecondition(`pod sandbox ${found.row.id} is not ready`);
      return work(viewOf(found));
    });
  }

  /** Stores a new pod's row, then makes it known. */
  add(record: SandboxRecord): void {
    this.store.insert(record.row);
    this.index.set(record.row.id, record);
  }

  update(record: SandboxRecord, fields: Partial<Omit<SandboxRow, 'id'>>): void {
    this.store.update(record.row.id, fields);
    Object.assign(record.row, fields);
  }

  /** Forgets the pod and its resource journal (everything in it must already be undone). */
  forget(id: string): void {
    this.store.delete(id);
    this.index.delete(id);
  }

  /** The pod, visible or not, holding this metadata (see podNameKey). */
  withNameKey(key: string): SandboxRecord | undefined {
    for (const record of this.index.all()) if (record.row.name_key === key) return record;
    return undefined;
  }

  /** Whether this record is still the known, visible pod of its id (it may have been removed while a caller waited for its lock). */
  isCurrent(record: SandboxRecord): boolean {
    return this.index.exact(record.row.id) === record && isVisible(record);
  }
}

function recordOf(row: SandboxRow): SandboxRecord {
  const config = JSON.parse(row.config_json) as PodSandboxConfig__Output;
  const ns = config.linux?.security_context?.namespace_options;
  const modes: PodNamespaceModes = ns
    ? { network: ns.network, pid: ns.pid, ipc: ns.ipc }
    : { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };
  // Validated when the pod was run: only the mappings are read back here.
  const userns = row.userns_path ? validateUsernsOptions(ns?.userns_options, undefined, 'userns_options') : undefined;
  return { row, config, modes, ips: JSON.parse(row.ips_json) as string[], userns };
}

/** What a list shows of a pod. */
export type ListedPodSandbox = Pick<PodSandboxView, 'id' | 'config' | 'state' | 'createdAt' | 'runtimeHandler'>;

/** A pod as a list shows it: none of the paths and copies of a full view (the kubelet relists every second). */
export function listedOf(r: SandboxRecord): ListedPodSandbox {
  const { row } = r;
  return { id: row.id, config: r.config, state: row.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY', createdAt: row.created_at, runtimeHandler: row.runtime_handler };
}

/** What the rest of berth sees of a pod (a copy: callers cannot change the record). */
export function viewOf(r: SandboxRecord): PodSandboxView {
  const { row } = r;
  return {
    id: row.id,
    config: r.config,
    state: row.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
    createdAt: row.created_at,
    runtimeHandler: row.runtime_handler,
    netnsPath: row.netns_path,
    ipcnsPath: row.ipcns_path,
    utsnsPath: row.utsns_path,
    pidnsPath: row.pidns_path && row.phase === 'ready' ? row.pidns_path : '',
    pidNamespace: row.pidns_path && row.phase === 'ready' ? { path: row.pidns_path, inode: row.pidns_inode, holderPid: row.pid_holder } : undefined,
    cgroupParent: row.cgroup_parent,
    hostsPath: join(row.state_dir, 'hosts'),
    resolvConfPath: join(row.state_dir, 'resolv.conf'),
    hostnamePath: join(row.state_dir, 'hostname'),
    shmPath: row.shm_path,
    hostname: row.hostname,
    ips: [...r.ips],
    namespaceModes: { ...r.modes },
    logDirectory: r.config.log_directory,
    userNamespace: row.userns_path && r.userns ? { path: row.userns_path, uids: { ...r.userns.uids }, gids: { ...r.userns.gids } } : undefined,
  };
}
