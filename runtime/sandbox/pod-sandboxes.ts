// Pod sandboxes: RunPodSandbox builds a pod from pinned namespaces (no pause
// container), per-pod files, a /dev/shm tmpfs, an optional PID-namespace
// holder and a CNI attachment; stop and remove undo it. Each host resource is
// recorded in the store before it is made, so a failed run, a failed
// teardown or a crash is undone by the next call or at the next start.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { Attachment, CniResult, RuntimeConfig } from '../../cni/cni-types';
import { CniPluginError } from '../../cni/cni-error';
import { podIpsOf, type CniNetwork } from '../../cni/cni-network';
import { NetworkConfigError } from '../../cni/network-config';
import type { BerthNative, NativeError } from '../../native';
import type { CgroupHierarchy } from '../cgroups/cgroup-hierarchy';
import type { BerthConfig } from '../config';
import { BerthError, describeError, internal, invalidArgument, notFound, alreadyExists, failedPrecondition } from '../errors';
import type { BerthDatabase } from '../store/database';
import { IdLocks } from '../common/id-locks';
import { findPidHolders, startPidHolder, stopPidHolder } from './pid-holder';
import { podNameKey, validatePodSandboxConfig, type PodNamespaceModes, type ValidatedPodConfig } from './pod-config-validation';
import { hostFile, renderPodHosts, renderResolvConf } from './pod-files';
import type { PodContainerHooks, PodSandboxView, SandboxLookup } from './sandbox-types';
import { SandboxStore, TEARDOWN_ORDER, type ResourceKind, type SandboxRow } from './sandbox-store';

/** The few logger methods the model uses (pino's Logger fits). */
export interface SandboxLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface PodSandboxesOptions {
  config: BerthConfig;
  db: BerthDatabase;
  cgroups: CgroupHierarchy;
  network: CniNetwork;
  native: BerthNative;
  log: SandboxLog;
  /** Pod CIDR from UpdateRuntimeConfig, passed to CNI as ipRanges ("" = none). */
  podCidr?: () => string;
}

/** containerd's default /dev/shm size for a pod. */
export const DEFAULT_SHM_BYTES = 64 * 1024 * 1024;
const POD_IFNAME = 'eth0';
const CNI_DEL_ATTEMPTS = 3;

interface SandboxRecord {
  row: SandboxRow;
  config: PodSandboxConfig__Output;
  modes: PodNamespaceModes;
  ips: string[];
}

/** What recovery at start found and did. */
export interface RecoveryReport {
  loaded: number;
  undone: string[];
  markedNotReady: string[];
  failures: { id: string; error: string }[];
  cniGc: { removed: string[]; failed: { id: string; error: string }[] };
}

export class PodSandboxes implements SandboxLookup {
  private readonly store: SandboxStore;
  private readonly records = new Map<string, SandboxRecord>();
  private readonly idLocks = new IdLocks();
  private readonly nameLocks = new IdLocks();
  private readonly inflight = new Map<string, Promise<string>>();
  private hooks: PodContainerHooks | undefined;
  private pinDirReady = false;

  constructor(private readonly o: PodSandboxesOptions) {
    this.store = new SandboxStore(o.db);
    for (const row of this.store.all()) this.records.set(row.id, toRecord(row));
  }

  /** Registered by the container model; until then pods have no containers to stop or remove. */
  setContainerHooks(hooks: PodContainerHooks): void {
    this.hooks = hooks;
  }

  // ---- SandboxLookup ----------------------------------------------------------

  get(idOrPrefix: string): PodSandboxView | undefined {
    const record = this.find(idOrPrefix);
    return record ? this.view(record) : undefined;
  }

  list(): PodSandboxView[] {
    return [...this.records.values()].filter(isVisible).map((r) => this.view(r));
  }

  /** By id or unique prefix; NOT_FOUND when absent, INVALID_ARGUMENT when the prefix is ambiguous. */
  resolve(idOrPrefix: string): PodSandboxView {
    if (!idOrPrefix) throw invalidArgument('pod_sandbox_id: empty');
    const exact = this.records.get(idOrPrefix);
    if (exact && isVisible(exact)) return this.view(exact);
    const matches = [...this.records.values()].filter((r) => isVisible(r) && r.row.id.startsWith(idOrPrefix));
    if (matches.length === 0) throw notFound(`pod sandbox "${idOrPrefix}" not found`);
    if (matches.length > 1) throw invalidArgument(`pod sandbox id prefix "${idOrPrefix}" is ambiguous (${matches.length} sandboxes)`);
    return this.view(matches[0]);
  }

  /** The CNI result ADD returned (for verbose status), or null. */
  cniResult(id: string): CniResult | null {
    const r = this.records.get(id);
    return r && r.row.cni_result_json ? (JSON.parse(r.row.cni_result_json) as CniResult) : null;
  }

  private find(idOrPrefix: string): SandboxRecord | undefined {
    if (!idOrPrefix) return undefined;
    const exact = this.records.get(idOrPrefix);
    if (exact) return isVisible(exact) ? exact : undefined;
    let found: SandboxRecord | undefined;
    for (const r of this.records.values()) {
      if (!isVisible(r) || !r.row.id.startsWith(idOrPrefix)) continue;
      if (found) return undefined;
      found = r;
    }
    return found;
  }

  private view(r: SandboxRecord): PodSandboxView {
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
      pidnsPath: row.pid_holder > 0 && row.phase === 'ready' ? `/proc/${row.pid_holder}/ns/pid` : '',
      cgroupParent: row.cgroup_parent,
      hostsPath: join(row.state_dir, 'hosts'),
      resolvConfPath: join(row.state_dir, 'resolv.conf'),
      hostnamePath: join(row.state_dir, 'hostname'),
      shmPath: row.shm_path,
      hostname: row.hostname,
      ips: [...r.ips],
      namespaceModes: { ...r.modes },
      logDirectory: r.config.log_directory,
    };
  }

  // ---- RunPodSandbox ----------------------------------------------------------

  /**
   * Creates the pod and returns its id. A retry with the same metadata while
   * the first call still runs, or after it finished, gets the same sandbox.
   */
  async run(rawConfig: PodSandboxConfig__Output | null, runtimeHandler: string): Promise<string> {
    const validated = validatePodSandboxConfig(rawConfig, this.o.config.cgroup.driver);
    const handler = runtimeHandler || this.o.config.oci.default_runtime;
    if (!this.o.config.oci.runtimes[handler]) {
      const known = Object.keys(this.o.config.oci.runtimes).join(', ');
      throw invalidArgument(`runtime_handler: no runtime for "${handler}" is configured (configured: ${known})`);
    }
    const key = podNameKey(validated.config);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const started = this.nameLocks.with(key, () => this.runOnce(key, validated, handler));
    this.inflight.set(key, started);
    try {
      return await started;
    } finally {
      if (this.inflight.get(key) === started) this.inflight.delete(key);
    }
  }

  private async runOnce(key: string, v: ValidatedPodConfig, handler: string): Promise<string> {
    const existing = [...this.records.values()].find((r) => r.row.name_key === key);
    if (existing) {
      if (existing.row.phase === 'ready') return existing.row.id;
      if (existing.row.phase === 'stopped') {
        throw alreadyExists(`pod sandbox ${existing.row.id} already has this metadata (${describeMeta(v.config)}); remove it first`);
      }
      // A failed run whose teardown did not finish: finish it, then start afresh.
      await this.idLocks.with(existing.row.id, () => this.teardown(existing));
      this.forgetRecord(existing.row.id);
    }
    this.ensurePinDir();

    const id = randomBytes(32).toString('hex');
    const stateDir = join(this.o.config.state, 'sandboxes', id);
    const hostNetwork = v.modes.network === 'NODE';
    const row: SandboxRow = {
      id,
      name_key: key,
      config_json: JSON.stringify(v.config),
      runtime_handler: handler,
      phase: 'creating',
      created_at: nowNanos(),
      ips_json: '[]',
      hostname: v.config.hostname || (hostNetwork ? osHostname() : defaultHostname(v.config)),
      cgroup_parent: this.cgroupParentFor(v.config, id),
      state_dir: stateDir,
      netns_path: hostNetwork ? '' : join(this.o.config.sandbox.namespace_dir, 'net', id),
      ipcns_path: v.modes.ipc === 'NODE' ? '' : join(this.o.config.sandbox.namespace_dir, 'ipc', id),
      utsns_path: hostNetwork ? '' : join(this.o.config.sandbox.namespace_dir, 'uts', id),
      pid_holder: 0,
      shm_path: v.modes.ipc === 'NODE' ? '' : join(stateDir, 'shm'),
      cni_result_json: '',
      last_error: '',
    };
    const record: SandboxRecord = { row, config: v.config, modes: v.modes, ips: [] };
    this.store.insert(row);
    this.records.set(id, record);

    return this.idLocks.with(id, async () => {
      try {
        await this.create(record, v);
        this.setRow(record, { phase: 'ready' });
        this.o.log.info({ pod: id, name: describeMeta(v.config), ips: record.ips }, 'pod sandbox ready');
        return id;
      } catch (err) {
        this.o.log.warn({ pod: id, err: describeError(err) }, 'pod sandbox failed to start; undoing');
        try {
          await this.teardown(record);
          this.forgetRecord(id);
        } catch (undoErr) {
          this.setRow(record, { phase: 'failed', last_error: describeError(undoErr) });
          this.o.log.error({ pod: id, err: describeError(undoErr) }, 'undoing a failed pod start failed; retried on the next run with this metadata and at start');
        }
        throw toBerthError(err, 'RunPodSandbox');
      }
    });
  }

  private async create(record: SandboxRecord, v: ValidatedPodConfig): Promise<void> {
    const { row } = record;
    const hostNetwork = v.modes.network === 'NODE';

    this.store.recordResource(row.id, 'statedir', row.state_dir);
    mkdirSync(row.state_dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(row.state_dir, 'hostname'), `${row.hostname}\n`, { mode: 0o644 });
    writeFileSync(join(row.state_dir, 'resolv.conf'), renderResolvConf(v.config.dns_config), { mode: 0o644 });
    writeFileSync(join(row.state_dir, 'hosts'), hostNetwork ? hostFile('/etc/hosts') : renderPodHosts(row.hostname, []), { mode: 0o644 });
    if (v.config.log_directory) mkdirSync(v.config.log_directory, { recursive: true, mode: 0o755 });

    if (this.o.config.cgroup.driver === 'cgroupfs' && row.cgroup_parent) {
      const dirs = this.o.cgroups.allDirs(row.cgroup_parent);
      if (!dirs.some((d) => existsSync(d))) {
        this.store.recordResource(row.id, 'cgroup', row.cgroup_parent);
        this.o.cgroups.ensure(row.cgroup_parent);
      }
    }

    if (row.netns_path || row.ipcns_path || row.utsns_path) {
      for (const [kind, path] of [['netns', row.netns_path], ['ipcns', row.ipcns_path], ['utsns', row.utsns_path]] as const) {
        if (path) this.store.recordResource(row.id, kind, path);
      }
      try {
        this.o.native.createPodNamespaces({
          net: row.netns_path,
          ipc: row.ipcns_path,
          uts: row.utsns_path,
          hostname: row.utsns_path ? row.hostname : '',
          sysctls: v.sysctls.map((s) => [s.procPath, s.value]),
          loopbackUp: Boolean(row.netns_path),
        });
      } catch (err) {
        const e = err as NativeError;
        if (e.syscall === 'open' && e.path?.startsWith('/proc/sys/')) {
          throw invalidArgument(`config.linux.sysctls: ${e.path.slice('/proc/sys/'.length).replace(/\//g, '.')} does not exist in the pod's namespaces`);
        }
        throw internal(`creating the pod's namespaces: ${e.message}`);
      }
    }

    if (row.shm_path) {
      this.store.recordResource(row.id, 'shm', row.shm_path);
      mkdirSync(row.shm_path, { recursive: true, mode: 0o755 });
      const f = this.o.native.mountFlags;
      try {
        this.o.native.mount('shm', row.shm_path, 'tmpfs', f.MS_NOSUID | f.MS_NODEV | f.MS_NOEXEC, `mode=1777,size=${DEFAULT_SHM_BYTES}`);
      } catch (err) {
        throw internal(`mounting the pod's /dev/shm: ${(err as Error).message}`);
      }
    }

    if (v.modes.pid === 'POD') {
      this.store.recordResource(row.id, 'pidholder', row.id);
      const pid = await startPidHolder(row.id).catch((err: unknown) => {
        throw internal(`starting the pod's PID namespace holder: ${describeError(err)}`);
      });
      this.setRow(record, { pid_holder: pid });
    }

    if (!hostNetwork) {
      this.store.recordResource(row.id, 'cni', row.id);
      const result = await this.o.network.add(this.attachmentFor(record), { loopbackReady: true });
      const ips = podIpsOf(result);
      record.ips = ips;
      this.setRow(record, { ips_json: JSON.stringify(ips), cni_result_json: JSON.stringify(result) });
      writeFileSync(join(row.state_dir, 'hosts'), renderPodHosts(row.hostname, ips), { mode: 0o644 });
    }
  }

  private attachmentFor(record: SandboxRecord): Attachment {
    const { config, row } = record;
    const meta = config.metadata!;
    const runtimeConfig: RuntimeConfig = {};
    const ports = config.port_mappings.filter((p) => p.host_port > 0);
    if (ports.length > 0) {
      runtimeConfig.portMappings = ports.map((p) => ({
        hostPort: p.host_port,
        containerPort: p.container_port,
        protocol: p.protocol.toLowerCase() as 'tcp' | 'udp' | 'sctp',
        ...(p.host_ip ? { hostIP: p.host_ip } : {}),
      }));
    }
    const bandwidth = bandwidthOf(config.annotations);
    if (bandwidth) runtimeConfig.bandwidth = bandwidth;
    const cidrs = (this.o.podCidr?.() ?? '').split(',').filter(Boolean);
    if (cidrs.length > 0) runtimeConfig.ipRanges = cidrs.map((subnet) => [{ subnet }]);
    if (config.dns_config) {
      runtimeConfig.dns = { servers: config.dns_config.servers, searches: config.dns_config.searches, options: config.dns_config.options };
    }
    return {
      containerId: row.id,
      netnsPath: row.netns_path,
      ifName: POD_IFNAME,
      args: [
        ['IgnoreUnknown', '1'],
        ['K8S_POD_NAMESPACE', meta.namespace],
        ['K8S_POD_NAME', meta.name],
        ['K8S_POD_INFRA_CONTAINER_ID', row.id],
        ['K8S_POD_UID', meta.uid],
      ],
      runtimeConfig,
    };
  }

  private cgroupParentFor(config: PodSandboxConfig__Output, id: string): string {
    const given = config.linux?.cgroup_parent ?? '';
    if (given) return given;
    return this.o.config.cgroup.driver === 'systemd' ? 'system.slice' : `/berth/pod-${id.slice(0, 16)}`;
  }

  // ---- StopPodSandbox / RemovePodSandbox --------------------------------------

  /** Stops the pod's containers, detaches its network, ends its PID holder. Unknown ids succeed. */
  async stop(idOrPrefix: string): Promise<void> {
    const found = this.find(idOrPrefix);
    if (!found) return;
    await this.idLocks.with(found.row.id, async () => {
      const record = this.records.get(found.row.id);
      if (!record || !isVisible(record)) return;
      await this.stopLocked(record);
    });
  }

  private async stopLocked(record: SandboxRecord): Promise<void> {
    if (this.hooks) await this.hooks.stopPodContainers(record.row.id, 0);
    const failures = await this.undo(record, ['cni', 'pidholder']);
    if (record.row.phase === 'ready') this.setRow(record, { phase: 'stopped' });
    if (failures.length > 0) {
      this.setRow(record, { last_error: failures.join('; ') });
      throw internal(`stopping pod sandbox ${record.row.id}: ${failures.join('; ')}`);
    }
  }

  /** Removes the pod's containers and every trace of the pod. Unknown ids succeed. */
  async remove(idOrPrefix: string): Promise<void> {
    const found = this.find(idOrPrefix);
    if (!found) return;
    await this.idLocks.with(found.row.id, async () => {
      const record = this.records.get(found.row.id);
      if (!record || !isVisible(record)) return;
      if (record.row.phase === 'ready') await this.stopLocked(record);
      if (this.hooks) await this.hooks.removePodContainers(record.row.id);
      await this.teardown(record);
      this.forgetRecord(record.row.id);
      this.o.log.info({ pod: record.row.id }, 'pod sandbox removed');
    });
  }

  /** Undoes every recorded resource; throws (leaving the rest recorded) when one fails. */
  private async teardown(record: SandboxRecord): Promise<void> {
    const failures = await this.undo(record, TEARDOWN_ORDER);
    if (failures.length > 0) {
      this.setRow(record, { last_error: failures.join('; ') });
      throw internal(`removing pod sandbox ${record.row.id}: ${failures.join('; ')}`);
    }
  }

  private async undo(record: SandboxRecord, kinds: readonly ResourceKind[]): Promise<string[]> {
    const failures: string[] = [];
    const resources = this.store.resources(record.row.id);
    for (const kind of kinds) {
      for (const res of resources.filter((r) => r.kind === kind)) {
        try {
          await this.undoResource(record, kind, res.ref);
          this.store.forgetResource(record.row.id, kind, res.ref);
        } catch (err) {
          failures.push(`${kind} ${res.ref}: ${describeError(err)}`);
        }
      }
    }
    return failures;
  }

  private async undoResource(record: SandboxRecord | undefined, kind: ResourceKind, ref: string): Promise<void> {
    const native = this.o.native;
    switch (kind) {
      case 'cni': {
        let last: unknown;
        for (let attempt = 0; attempt < CNI_DEL_ATTEMPTS; attempt++) {
          try {
            await this.o.network.del(ref, POD_IFNAME);
            return;
          } catch (err) {
            last = err;
            await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
          }
        }
        throw last;
      }
      case 'pidholder': {
        if (record && record.row.pid_holder > 0) await stopPidHolder(record.row.pid_holder, ref);
        for (const pid of findPidHolders(ref)) await stopPidHolder(pid, ref);
        if (record) this.setRow(record, { pid_holder: 0 });
        return;
      }
      case 'shm':
        umountIfMounted(native, ref);
        return;
      case 'netns':
      case 'ipcns':
      case 'utsns':
        native.unpinNamespace(ref);
        return;
      case 'cgroup':
        this.o.cgroups.remove(ref);
        return;
      case 'statedir':
        // A mount left under it (shm) must never be descended into by rm.
        umountIfMounted(native, join(ref, 'shm'));
        rmSync(ref, { recursive: true, force: true });
        return;
    }
  }

  // ---- UpdatePodSandboxResources ----------------------------------------------

  updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output | null): { written: string[]; skipped: string[] } {
    const view = this.resolve(idOrPrefix);
    if (!resources) return { written: [], skipped: [] };
    if (!view.cgroupParent) throw failedPrecondition(`pod sandbox ${view.id} has no cgroup parent`);
    const exists = this.o.cgroups.allDirs(view.cgroupParent).some((d) => existsSync(d));
    if (!exists) throw failedPrecondition(`pod sandbox ${view.id}: cgroup ${view.cgroupParent} does not exist`);
    return this.o.cgroups.applyResources(view.cgroupParent, resources);
  }

  // ---- recovery at start --------------------------------------------------------

  /**
   * Finishes what a crash or a failed call left: runs that never completed are
   * undone, failed teardowns retried, pods whose namespaces vanished (reboot)
   * marked NOTREADY, orphaned pins and CNI attachments removed.
   */
  async recover(): Promise<RecoveryReport> {
    this.ensurePinDir();
    const report: RecoveryReport = { loaded: this.records.size, undone: [], markedNotReady: [], failures: [], cniGc: { removed: [], failed: [] } };
    for (const record of [...this.records.values()]) {
      const id = record.row.id;
      await this.idLocks.with(id, async () => {
        try {
          if (record.row.phase === 'creating' || record.row.phase === 'failed') {
            await this.teardown(record);
            this.forgetRecord(id);
            report.undone.push(id);
            return;
          }
          if (record.row.phase === 'ready' && !this.stillAlive(record)) {
            this.setRow(record, { phase: 'stopped' });
            report.markedNotReady.push(id);
          }
          if (record.row.phase === 'stopped') {
            const failures = await this.undo(record, ['cni', 'pidholder']);
            if (failures.length > 0) throw new Error(failures.join('; '));
          }
        } catch (err) {
          report.failures.push({ id, error: describeError(err) });
        }
      });
    }
    for (const res of this.store.orphanResources()) {
      try {
        await this.undoResource(undefined, res.kind, res.ref);
        this.store.forgetResource(res.sandbox_id, res.kind, res.ref);
      } catch (err) {
        report.failures.push({ id: res.sandbox_id, error: describeError(err) });
      }
    }
    this.unpinOrphans(report);
    const attached = new Set<string>();
    for (const record of this.records.values()) {
      if (this.store.resources(record.row.id).some((r) => r.kind === 'cni')) attached.add(record.row.id);
    }
    report.cniGc = await this.o.network.gc(attached).catch((err: unknown) => ({ removed: [], failed: [{ id: 'gc', error: describeError(err) }] }));
    return report;
  }

  private stillAlive(record: SandboxRecord): boolean {
    const { row } = record;
    for (const path of [row.netns_path, row.ipcns_path, row.utsns_path]) {
      if (path && this.o.native.namespaceFileState(path) !== 'pinned') return false;
    }
    if (row.pid_holder > 0 && findPidHolders(row.id).length === 0) return false;
    return true;
  }

  private unpinOrphans(report: RecoveryReport): void {
    const known = new Set<string>();
    for (const record of this.records.values()) {
      for (const path of [record.row.netns_path, record.row.ipcns_path, record.row.utsns_path]) if (path) known.add(path);
    }
    for (const kind of ['net', 'ipc', 'uts']) {
      const dir = join(this.o.config.sandbox.namespace_dir, kind);
      let names: string[] = [];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const path = join(dir, name);
        if (known.has(path)) continue;
        try {
          this.o.native.unpinNamespace(path);
          report.undone.push(`orphan ${path}`);
        } catch (err) {
          report.failures.push({ id: path, error: describeError(err) });
        }
      }
    }
  }

  private ensurePinDir(): void {
    if (this.pinDirReady) return;
    const dir = this.o.config.sandbox.namespace_dir;
    for (const kind of ['net', 'ipc', 'uts']) mkdirSync(join(dir, kind), { recursive: true, mode: 0o700 });
    try {
      this.o.native.makePrivateMount(dir);
    } catch (err) {
      throw internal(`making ${dir} a private mount for namespace pins: ${describeError(err)}`);
    }
    this.pinDirReady = true;
  }

  // ---- rows ----------------------------------------------------------------------

  private setRow(record: SandboxRecord, fields: Partial<Omit<SandboxRow, 'id'>>): void {
    this.store.update(record.row.id, fields);
    Object.assign(record.row, fields);
  }

  private forgetRecord(id: string): void {
    this.store.delete(id);
    this.records.delete(id);
  }
}

function isVisible(record: SandboxRecord): boolean {
  return record.row.phase === 'ready' || record.row.phase === 'stopped';
}

function toRecord(row: SandboxRow): SandboxRecord {
  const config = JSON.parse(row.config_json) as PodSandboxConfig__Output;
  const ns = config.linux?.security_context?.namespace_options;
  const modes: PodNamespaceModes = ns
    ? { network: ns.network, pid: ns.pid, ipc: ns.ipc }
    : { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };
  return { row, config, modes, ips: JSON.parse(row.ips_json) as string[] };
}

function umountIfMounted(native: BerthNative, path: string): void {
  try {
    native.umount2(path, native.mountFlags.MNT_DETACH);
  } catch (err) {
    const errno = (err as NativeError).errno;
    // EINVAL: not a mount point (already unmounted); ENOENT: gone.
    if (errno !== 22 && errno !== 2) throw err;
  }
}

function nowNanos(): string {
  return (BigInt(Date.now()) * 1_000_000n + process.hrtime.bigint() % 1_000_000n).toString();
}

function describeMeta(config: PodSandboxConfig__Output): string {
  const m = config.metadata!;
  return `${m.namespace}/${m.name} uid ${m.uid} attempt ${m.attempt}`;
}

function defaultHostname(config: PodSandboxConfig__Output): string {
  const name = config.metadata!.name.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return name || 'pod';
}

/** kubernetes.io/{ingress,egress}-bandwidth annotations ("10M", "1G") as the bandwidth capability (bits/s). */
export function bandwidthOf(annotations: Record<string, string>): RuntimeConfig['bandwidth'] | undefined {
  const parse = (v: string | undefined): number | undefined => {
    if (!v) return undefined;
    const m = /^(\d+(?:\.\d+)?)([kMGT]?)$/.exec(v.trim());
    if (!m) throw invalidArgument(`config.annotations: bandwidth ${JSON.stringify(v)} is not a quantity such as 10M`);
    const scale = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as '' | 'k' | 'M' | 'G' | 'T'];
    return Math.round(Number(m[1]) * scale);
  };
  const ingress = parse(annotations['kubernetes.io/ingress-bandwidth']);
  const egress = parse(annotations['kubernetes.io/egress-bandwidth']);
  if (ingress === undefined && egress === undefined) return undefined;
  // Burst as the kubelet's dockershim did: effectively unlimited within the rate.
  const burst = 2 ** 31 - 1;
  return {
    ...(ingress !== undefined ? { ingressRate: ingress, ingressBurst: burst } : {}),
    ...(egress !== undefined ? { egressRate: egress, egressBurst: burst } : {}),
  };
}

function toBerthError(err: unknown, what: string): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof CniPluginError) return internal(`${what}: setting up the pod network: ${err.message}`, err);
  if (err instanceof NetworkConfigError) return failedPrecondition(`${what}: ${err.message}`);
  return internal(`${what}: ${describeError(err)}`, err);
}
