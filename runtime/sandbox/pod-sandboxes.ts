// Pod sandboxes: the facade the shim and the other models use. It finds pods
// by id or unique prefix, validates requests (pod-config-validation.ts), holds
// one lock per pod and per pod name, and hands each verb to its own file:
// run-pod-sandbox.ts, pod-teardown.ts, sandbox-recovery.ts; the parts they
// share are the records (sandbox-records.ts), the resource journal
// (pod-resource-journal.ts), the namespace pins (namespace-pins.ts) and the
// pod network (pod-network.ts).
import { existsSync } from 'node:fs';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { CniNetwork } from '../../cni/cni-network';
import type { CniResult } from '../../cni/cni-types';
import type { BerthNative } from '../../native';
import type { CgroupHierarchy } from '../cgroups/cgroup-hierarchy';
import type { SystemdCgroups } from '../cgroups/systemd-cgroups';
import { IdLocks } from '../common/id-locks';
import { RetriableCreates } from '../common/retriable-creates';
import type { RuntimeLog } from '../common/log';
import type { BerthConfig } from '../config';
import type { FeatureSupport } from '../host/mount-features';
import { nowUnixNanos } from '../common/clock';
import { describeError, failedPrecondition } from '../errors';
import type { ContainerEventPublisher, ContainerEventType } from '../events/event-types';
import { watchPidHolder } from './pid-holder';
import { NamespacePins } from './namespace-pins';
import { podNameKey, requirePodSandboxId, validateRunPodSandbox } from './pod-config-validation';
import { PodNetwork, type CniCallObserver } from './pod-network';
import { PodResourceJournal } from './pod-resource-journal';
import { removePod, stopPod } from './pod-teardown';
import { runPodSandbox } from './run-pod-sandbox';
import { SandboxRecords, listedOf, viewOf, type ListedPodSandbox, type SandboxRecord } from './sandbox-records';
import { recoverSandboxes, type RecoveryReport } from './sandbox-recovery';
import type { PodContainerHooks, PodSandboxView, SandboxLookup } from './sandbox-types';

export interface PodSandboxesOptions {
  config: BerthConfig;
  /** The pods berthd knows (built first: the container model looks pods up through it). */
  records: SandboxRecords;
  /** The container model: a pod's stop and removal stop and remove its containers first. */
  containers: PodContainerHooks;
  cgroups: CgroupHierarchy;
  network: CniNetwork;
  native: BerthNative;
  log: RuntimeLog;
  /** Pod CIDR from UpdateRuntimeConfig, passed to CNI as ipRanges ("" = none). */
  podCidr?: () => string;
  /** Told the duration and outcome of each CNI call (metrics). */
  observeCniCall?: CniCallObserver;
  /** The systemd driver's manager connection (driver = systemd). */
  systemd?: SystemdCgroups;
  /** Whether pods may have their own user namespace here (found at start); unsupported when not given. */
  userNamespaces?: FeatureSupport;
  /** Where the pod's own lifecycle events go (GetContainerEvents carries them with the pod id as container id). */
  events?: ContainerEventPublisher;
}

/** What the verb files share. */
export interface SandboxParts {
  config: BerthConfig;
  records: SandboxRecords;
  journal: PodResourceJournal;
  pins: NamespacePins;
  network: PodNetwork;
  cgroups: CgroupHierarchy;
  systemd?: SystemdCgroups;
  native: BerthNative;
  log: RuntimeLog;
  /** One lock per pod id. */
  locks: IdLocks;
  containers: PodContainerHooks;
  /** Publishes a lifecycle event of the pod itself, as containerd does for its sandboxes. */
  publish(type: ContainerEventType, podId: string): void;
  /** Watches a ready pod's PID-namespace holder: dying by itself makes the pod NOTREADY. */
  watchPidHolder(record: SandboxRecord): void;
}

export class PodSandboxes implements SandboxLookup {
  private readonly parts: SandboxParts;
  private readonly records: SandboxRecords;
  private readonly nameLocks = new IdLocks();
  /** RunPodSandbox calls by pod name: a retry joins one in flight or gets the pod it made and delivered to nobody. */
  private readonly creates = new RetriableCreates();
  private readonly userNamespaces: FeatureSupport;

  constructor(o: PodSandboxesOptions) {
    const records = o.records;
    const pins = new NamespacePins(o.native, o.config.sandbox.namespace_dir);
    const network = new PodNetwork({ network: o.network, podCidr: o.podCidr, observe: o.observeCniCall });
    const journal = new PodResourceJournal({ records, network, pins, native: o.native, cgroups: o.cgroups, systemd: o.systemd });
    this.records = records;
    this.userNamespaces = o.userNamespaces ?? { supported: false, reason: 'not probed' };
    this.parts = {
      config: o.config, records, journal, pins, network, cgroups: o.cgroups, systemd: o.systemd, native: o.native, log: o.log,
      locks: records.locks,
      containers: o.containers,
      publish: (type, podId) => {
        try {
          o.events?.publish({ type, containerId: podId, podSandboxId: podId, createdAt: nowUnixNanos() });
        } catch (err) {
          o.log.warn({ pod: podId, err: describeError(err) }, 'pod event publish failed');
        }
      },
      watchPidHolder: (record) => this.watchPidHolder(record),
    };
  }

  /** By full id or unique id prefix; undefined when absent or ambiguous. */
  get(idOrPrefix: string): PodSandboxView | undefined {
    const record = this.records.index.find(idOrPrefix);
    return record ? viewOf(record) : undefined;
  }

  list(): PodSandboxView[] {
    return this.records.index.visible().map(viewOf);
  }

  /** ListPodSandbox: every visible pod as a list shows it (listedOf). */
  listed(): ListedPodSandbox[] {
    return this.records.index.visible().map(listedOf);
  }

  whileReady<T>(idOrPrefix: string, work: (pod: PodSandboxView) => Promise<T>): Promise<T> {
    return this.records.whileReady(idOrPrefix, work);
  }

  /** By id or unique prefix: INVALID_ARGUMENT when empty or ambiguous, NOT_FOUND when absent. */
  resolve(idOrPrefix: string): PodSandboxView {
    return viewOf(this.records.index.require(requirePodSandboxId(idOrPrefix)));
  }

  /** The CNI result ADD returned (for verbose status), or null. */
  cniResult(id: string): CniResult | null {
    const r = this.records.index.exact(id);
    return r && r.row.cni_result_json ? (JSON.parse(r.row.cni_result_json) as CniResult) : null;
  }

  /**
   * RunPodSandbox: creates the pod and returns its id. A call with the same
   * metadata while the first still runs joins it; one after a pod was
   * delivered (its answer handed to a live caller) is ALREADY_EXISTS; one
   * after a pod whose answer reached nobody gets that pod. `delivered`
   * settles once this call's answer was handed over (true) or could not be.
   */
  async run(config: PodSandboxConfig__Output | null, runtimeHandler: string, delivered: Promise<boolean> = Promise.resolve(true)): Promise<string> {
    const validated = validateRunPodSandbox(config, runtimeHandler, this.parts.config);
    if (validated.userns && !this.userNamespaces.supported) {
      throw failedPrecondition(`config.linux.security_context.namespace_options.userns_options: this host cannot give pods their own user namespace (${this.userNamespaces.reason})`);
    }
    const key = podNameKey(validated.config);
    const ready = (id: string): boolean => this.records.index.exact(id)?.row.phase === 'ready';
    return this.creates.run(key, () => this.nameLocks.with(key, () => runPodSandbox(this.parts, key, validated)), ready, delivered);
  }

  /** StopPodSandbox: stops the pod's containers, detaches its network, ends its PID holder. Unknown ids succeed. */
  stop(idOrPrefix: string): Promise<void> {
    return this.withPod(idOrPrefix, (record) => stopPod(this.parts, record));
  }

  /** RemovePodSandbox: removes the pod's containers and every trace of the pod. Unknown ids succeed. */
  remove(idOrPrefix: string): Promise<void> {
    return this.withPod(idOrPrefix, (record) => removePod(this.parts, record));
  }

  /** UpdatePodSandboxResources: pod-level limits written to the pod's cgroup. */
  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output | null): Promise<{ written: string[]; skipped: string[] }> {
    const view = this.resolve(idOrPrefix);
    if (!resources) return { written: [], skipped: [] };
    const { cgroups, systemd } = this.parts;
    if (!view.cgroupParent) throw failedPrecondition(`pod sandbox ${view.id} has no cgroup parent`);
    if (systemd) {
      // systemd owns the slice: a file written behind its back would be undone at its next reload.
      if (!(await systemd.exists(view.cgroupParent))) throw failedPrecondition(`pod sandbox ${view.id}: systemd has no unit ${view.cgroupParent}`);
      const { skipped } = await systemd.applyResources(view.cgroupParent, resources);
      return { written: [], skipped };
    }
    if (!cgroups.allDirs(view.cgroupParent).some((d) => existsSync(d))) {
      throw failedPrecondition(`pod sandbox ${view.id}: cgroup ${view.cgroupParent} does not exist`);
    }
    return cgroups.applyResources(view.cgroupParent, resources);
  }

  /** At start, before serving: see sandbox-recovery.ts. Ready pods' PID holders are watched from here on. */
  async recover(): Promise<RecoveryReport> {
    const report = await recoverSandboxes(this.parts);
    for (const record of this.records.index.all()) if (record.row.phase === 'ready') this.watchPidHolder(record);
    return report;
  }

  /**
   * The holder of a pod's PID namespace dying by itself (killed, OOM) ends
   * every process of the pod: the pod is NOTREADY from then on and a stopped
   * event tells the kubelet, which then stops and recreates it.
   */
  private watchPidHolder(record: SandboxRecord): void {
    const { id } = record.row;
    const pid = record.row.pid_holder;
    if (pid <= 0) return;
    const died = (): void => {
      void this.parts.locks
        .with(id, async () => {
          if (!this.records.isCurrent(record) || record.row.phase !== 'ready' || record.row.pid_holder !== pid) return;
          this.records.update(record, { phase: 'stopped' });
          this.parts.log.warn({ pod: id, pid }, 'the pod\'s PID namespace holder exited by itself; the pod is NOTREADY');
          this.parts.publish('CONTAINER_STOPPED_EVENT', id);
        })
        .catch((err: unknown) => this.parts.log.error({ pod: id, err: describeError(err) }, 'marking a pod whose PID holder died'));
    };
    try {
      watchPidHolder(this.parts.native, pid, id, died);
    } catch (err) {
      this.parts.log.warn({ pod: id, pid, err: describeError(err) }, 'cannot watch the pod\'s PID namespace holder; its death is seen at the next restart');
    }
  }

  /** Runs `fn` on the pod under its lock; an unknown id (or one removed while waiting for the lock) is done already. */
  private async withPod(idOrPrefix: string, fn: (record: SandboxRecord) => Promise<void>): Promise<void> {
    const found = this.records.index.find(requirePodSandboxId(idOrPrefix));
    if (!found) return;
    await this.parts.locks.with(found.row.id, async () => {
      if (this.records.isCurrent(found)) await fn(found);
    });
  }
}
