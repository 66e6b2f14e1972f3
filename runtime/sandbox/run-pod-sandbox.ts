// RunPodSandbox: a pod built from pinned namespaces (no pause container),
// per-pod files, a /dev/shm tmpfs, an optional PID-namespace holder and a CNI
// attachment. Each step records its host resource in the journal before it
// makes it; when a step fails, the half-made pod is undone from the journal
// here, and what cannot be undone now is retried by the next run with the same
// metadata and at the next start.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { nowUnixNanos } from '../common/clock';
import { allowTraversal } from '../common/traversable';
import type { NativeError } from '../../native';
import { alreadyExists, asBerthError, describeError, internal, invalidArgument } from '../errors';
import { isPidHolderOf, startPidHolder } from './pid-holder';
import { ownCgroupParent } from './pod-resource-journal';
import type { ValidatedRunPodSandbox } from './pod-config-validation';
import { hostFile, renderPodHosts, renderResolvConf } from './pod-files';
import type { SandboxParts } from './pod-sandboxes';
import type { SandboxRecord } from './sandbox-records';
import type { SandboxRow } from './sandbox-store';

const ELOOP = 40;
const ENOTDIR = 20;

/** containerd's default /dev/shm size for a pod. */
const DEFAULT_SHM_BYTES = 64 * 1024 * 1024;

/**
 * Runs the pod named by `nameKey` (the caller holds that name's lock). The
 * name of a pod that exists is reserved for it (ALREADY_EXISTS, naming it and
 * its owner, as containerd and CRI-O answer); a failed run's leftovers are
 * undone first.
 */
export async function runPodSandbox(parts: SandboxParts, nameKey: string, v: ValidatedRunPodSandbox): Promise<string> {
  const existing = parts.records.withNameKey(nameKey);
  if (existing) {
    if (existing.row.phase === 'ready' || existing.row.phase === 'stopped') {
      const state = existing.row.phase === 'ready' ? 'ready' : 'stopped';
      throw alreadyExists(`pod sandbox name "${reservedName(v.config)}" is reserved for pod sandbox ${existing.row.id} (${state}); remove it first or run with another attempt`);
    }
    // A failed run whose undo did not finish: finish it, then start afresh.
    await parts.locks.with(existing.row.id, () => parts.journal.undoAll(existing));
    parts.records.forget(existing.row.id);
  }

  const record = newRecord(parts, nameKey, v);
  const id = record.row.id;
  parts.records.add(record);
  return parts.locks.with(id, async () => {
    try {
      await build(parts, record, v);
      parts.records.update(record, { phase: 'ready' });
      parts.log.info({ pod: id, name: describeMeta(v.config), ips: record.ips }, 'pod sandbox ready');
      // As containerd: the pod itself is created and started, then the kubelet's evented PLEG sees it.
      parts.publish('CONTAINER_CREATED_EVENT', id);
      parts.publish('CONTAINER_STARTED_EVENT', id);
      parts.watchPidHolder(record);
      return id;
    } catch (err) {
      parts.log.warn({ pod: id, err: describeError(err) }, 'pod sandbox failed to start; undoing');
      try {
        await parts.journal.undoAll(record);
        parts.records.forget(id);
      } catch (undoErr) {
        parts.records.update(record, { phase: 'failed', last_error: describeError(undoErr) });
        parts.log.error({ pod: id, err: describeError(undoErr) }, 'undoing a failed pod start failed; retried on the next run with this metadata and at start');
      }
      throw asBerthError(err, 'RunPodSandbox');
    }
  });
}

/** The pod's row as it is first stored (phase "creating"): where each of its resources will be. */
function newRecord(parts: SandboxParts, nameKey: string, v: ValidatedRunPodSandbox): SandboxRecord {
  const id = randomBytes(32).toString('hex');
  const stateDir = join(parts.config.state, 'sandboxes', id);
  const hostNetwork = v.modes.network === 'NODE';
  const hostIpc = v.modes.ipc === 'NODE';
  const row: SandboxRow = {
    id,
    name_key: nameKey,
    config_json: JSON.stringify(v.config),
    runtime_handler: v.runtimeHandler,
    phase: 'creating',
    created_at: nowUnixNanos(),
    ips_json: '[]',
    hostname: v.config.hostname || (hostNetwork ? osHostname() : defaultHostname(v.config)),
    cgroup_parent: cgroupParentFor(parts, v.config, id),
    state_dir: stateDir,
    netns_path: hostNetwork ? '' : parts.pins.pathOf('net', id),
    ipcns_path: hostIpc ? '' : parts.pins.pathOf('ipc', id),
    utsns_path: hostNetwork ? '' : parts.pins.pathOf('uts', id),
    userns_path: v.userns ? parts.pins.pathOf('user', id) : '',
    pid_holder: 0,
    pidns_path: '',
    pidns_inode: 0,
    shm_path: hostIpc ? '' : join(stateDir, 'shm'),
    cni_result_json: '',
    last_error: '',
  };
  return { row, config: v.config, modes: v.modes, ips: [], userns: v.userns };
}

/** The steps, each journaled before it is taken. */
async function build(parts: SandboxParts, record: SandboxRecord, v: ValidatedRunPodSandbox): Promise<void> {
  const { row } = record;
  const { journal } = parts;
  const hostNetwork = v.modes.network === 'NODE';

  journal.record(row.id, 'statedir', row.state_dir);
  mkdirSync(row.state_dir, { recursive: true, mode: 0o700 });
  // Its containers' runc reads the pod's files from inside the pod's user namespace.
  if (row.userns_path) allowTraversal([parts.config.state, join(parts.config.state, 'sandboxes'), row.state_dir]);
  writeFileSync(join(row.state_dir, 'hostname'), `${row.hostname}\n`, { mode: 0o644 });
  writeFileSync(join(row.state_dir, 'resolv.conf'), renderResolvConf(v.config.dns_config), { mode: 0o644 });
  writeFileSync(join(row.state_dir, 'hosts'), hostNetwork ? hostFile('/etc/hosts') : renderPodHosts(row.hostname, []), { mode: 0o644 });
  if (v.config.log_directory) makeLogDirectory(parts, v.config.log_directory);

  // Only the parent berth names for a pod that has none is the pod's own (removed with it).
  // A parent the caller names may be shared by other pods or be the kubelet's: made when
  // missing, never recorded, never removed (containerd never removes a cgroup_parent).
  const own = row.cgroup_parent === ownCgroupParent(parts.config.cgroup.driver, row.id);
  if (parts.config.cgroup.driver === 'cgroupfs' && row.cgroup_parent) {
    if (own) journal.record(row.id, 'cgroup', row.cgroup_parent);
    parts.cgroups.ensure(row.cgroup_parent);
  } else if (parts.systemd && row.cgroup_parent && !(await parts.systemd.exists(row.cgroup_parent))) {
    if (own) journal.record(row.id, 'cgroup', row.cgroup_parent);
    await parts.systemd.ensureSlice(row.cgroup_parent);
  }

  if (row.netns_path || row.ipcns_path || row.utsns_path || row.userns_path) {
    for (const [kind, path] of [['netns', row.netns_path], ['ipcns', row.ipcns_path], ['utsns', row.utsns_path], ['userns', row.userns_path]] as const) {
      if (path) journal.record(row.id, kind, path);
    }
    parts.pins.create({ net: row.netns_path, ipc: row.ipcns_path, uts: row.utsns_path, user: row.userns_path }, row.hostname, v.sysctls, v.userns);
  }

  if (row.shm_path) {
    journal.record(row.id, 'shm', row.shm_path);
    mkdirSync(row.shm_path, { recursive: true, mode: 0o755 });
    const f = parts.native.mountFlags;
    try {
      parts.native.mount('shm', row.shm_path, 'tmpfs', f.MS_NOSUID | f.MS_NODEV | f.MS_NOEXEC, `mode=1777,size=${DEFAULT_SHM_BYTES}`);
    } catch (err) {
      throw internal(`mounting the pod's /dev/shm: ${describeError(err)}`);
    }
  }

  if (v.modes.pid === 'POD') {
    journal.record(row.id, 'pidholder', row.id);
    const pid = await startPidHolder(row.id, row.userns_path).catch((err: unknown) => {
      throw internal(`starting the pod's PID namespace holder: ${describeError(err)}`);
    });
    parts.records.update(record, { pid_holder: pid });
    // Pinned like net/ipc/uts: containers join the pin, never /proc/<pid>, whose pid may be reused.
    const pidnsPath = parts.pins.pathOf('pid', row.id);
    journal.record(row.id, 'pidns', pidnsPath);
    const inode = parts.pins.pinPid(pid, pidnsPath);
    // Still our holder once pinned: it had this pid all along, so the pin holds its namespace.
    if (!isPidHolderOf(pid, row.id)) throw internal(`the pod's PID namespace holder (pid ${pid}) exited while its namespace was pinned`);
    parts.records.update(record, { pidns_path: pidnsPath, pidns_inode: inode });
  }

  if (!hostNetwork) {
    journal.record(row.id, 'cni', row.id);
    const attached = await parts.network.attach({ podId: row.id, netnsPath: row.netns_path, config: v.config, bandwidth: v.bandwidth });
    record.ips = attached.ips;
    parts.records.update(record, { ips_json: JSON.stringify(attached.ips), cni_result_json: JSON.stringify(attached.result) });
    writeFileSync(join(row.state_dir, 'hosts'), renderPodHosts(row.hostname, attached.ips), { mode: 0o644 });
  }
}

/** The pod's log directory, made without following a link anywhere from "/" (its containers' logs are made below it the same way). */
function makeLogDirectory(parts: SandboxParts, dir: string): void {
  try {
    parts.native.prepareLogFile(dir, '', { create: true, dirMayFollow: false });
  } catch (err) {
    const errno = (err as NativeError).errno;
    if (errno === ELOOP || errno === ENOTDIR) throw invalidArgument(`config.log_directory: ${describeError(err)} (a symbolic link or a file on the way)`);
    throw internal(`making the pod's log directory ${dir}: ${describeError(err)}`);
  }
}

function cgroupParentFor(parts: SandboxParts, config: PodSandboxConfig__Output, id: string): string {
  return config.linux?.cgroup_parent || ownCgroupParent(parts.config.cgroup.driver, id);
}

/** The name a pod's metadata reserves, in the form containerd and CRI-O print it. */
function reservedName(config: PodSandboxConfig__Output): string {
  const m = config.metadata!;
  return `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;
}

function describeMeta(config: PodSandboxConfig__Output): string {
  const m = config.metadata!;
  return `${m.namespace}/${m.name} uid ${m.uid} attempt ${m.attempt}`;
}

function defaultHostname(config: PodSandboxConfig__Output): string {
  const name = config.metadata!.name.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return name || 'pod';
}
