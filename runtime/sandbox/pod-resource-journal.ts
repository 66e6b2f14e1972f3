// The resource journal: every host resource a pod owns (CNI attachment, PID
// holder, /dev/shm mount, pinned namespaces (user namespace included), cgroup, state dir) is written to
// the store before it is made and struck off once it is undone. Whoever undoes
// a pod (a failed RunPodSandbox, stop, remove, recovery at start) replays the
// journal, so a crash at any step leaves a record of exactly what to undo.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BerthNative, NativeError } from '../../native';
import type { CgroupHierarchy } from '../cgroups/cgroup-hierarchy';
import type { SystemdCgroups } from '../cgroups/systemd-cgroups';
import type { CgroupDriver } from '../config';
import { describeError, internal } from '../errors';
import type { NamespacePins } from './namespace-pins';
import { findPidHolders, stopPidHolder } from './pid-holder';
import type { PodNetwork } from './pod-network';
import type { SandboxRecord, SandboxRecords } from './sandbox-records';
import { TEARDOWN_ORDER, type ResourceKind, type SandboxStore } from './sandbox-store';

/**
 * The cgroup parent berth names for a pod that was given none: the only pod
 * cgroup that is berth's to remove, and only for that one pod.
 */
export function ownCgroupParent(driver: CgroupDriver, podId: string): string {
  return driver === 'systemd' ? `berth-pod${podId.slice(0, 16)}.slice` : `/berth/pod-${podId.slice(0, 16)}`;
}

/** What stop undoes: the pod keeps its namespaces, files and cgroup until it is removed. */
export const STOP_KINDS: readonly ResourceKind[] = ['cni', 'pidholder', 'pidns'];

export interface JournalParts {
  records: SandboxRecords;
  network: PodNetwork;
  pins: NamespacePins;
  native: BerthNative;
  cgroups: CgroupHierarchy;
  /** The systemd driver's manager connection (driver = systemd). */
  systemd?: SystemdCgroups;
}

export class PodResourceJournal {
  constructor(private readonly parts: JournalParts) {}

  private get store(): SandboxStore {
    return this.parts.records.store;
  }

  /** Records that the pod is about to own `ref`; call before making it. */
  record(podId: string, kind: ResourceKind, ref: string): void {
    this.store.recordResource(podId, kind, ref);
  }

  /** Whether the pod owns a resource of this kind still to be undone. */
  holds(podId: string, kind: ResourceKind): boolean {
    return this.store.resources(podId).some((r) => r.kind === kind);
  }

  /** Undoes the pod's resources of these kinds, in the order given; returns what failed (still recorded, for a retry). */
  async undo(record: SandboxRecord, kinds: readonly ResourceKind[]): Promise<string[]> {
    const failures: string[] = [];
    const resources = this.store.resources(record.row.id);
    for (const kind of kinds) {
      for (const res of resources.filter((r) => r.kind === kind)) {
        try {
          await this.undoResource(record.row.id, record, kind, res.ref);
          this.store.forgetResource(record.row.id, kind, res.ref);
        } catch (err) {
          failures.push(`${kind} ${res.ref}: ${describeError(err)}`);
        }
      }
    }
    return failures;
  }

  /** Undoes everything the pod owns; throws (leaving the rest recorded, and the failure on the row) when any of it fails. */
  async undoAll(record: SandboxRecord): Promise<void> {
    const failures = await this.undo(record, TEARDOWN_ORDER);
    if (failures.length > 0) {
      this.parts.records.update(record, { last_error: failures.join('; ') });
      throw internal(`removing pod sandbox ${record.row.id}: ${failures.join('; ')}`);
    }
  }

  /** Undoes resources whose pod row is gone; returns what failed. */
  async undoOrphans(): Promise<{ id: string; error: string }[]> {
    const failures: { id: string; error: string }[] = [];
    for (const res of this.store.orphanResources()) {
      try {
        await this.undoResource(res.sandbox_id, undefined, res.kind, res.ref);
        this.store.forgetResource(res.sandbox_id, res.kind, res.ref);
      } catch (err) {
        failures.push({ id: res.sandbox_id, error: describeError(err) });
      }
    }
    return failures;
  }

  private async undoResource(podId: string, record: SandboxRecord | undefined, kind: ResourceKind, ref: string): Promise<void> {
    const { native } = this.parts;
    switch (kind) {
      case 'cni':
        await this.parts.network.detach(ref);
        return;
      case 'pidholder': {
        if (record && record.row.pid_holder > 0) await stopPidHolder(record.row.pid_holder, ref);
        // A crash between starting the holder and recording its pid: find it by the pod id on its command line.
        for (const pid of findPidHolders(ref)) await stopPidHolder(pid, ref);
        if (record) this.parts.records.update(record, { pid_holder: 0 });
        return;
      }
      case 'shm':
        umountIfMounted(native, ref);
        return;
      case 'pidns':
        this.parts.pins.unpin(ref);
        if (record) this.parts.records.update(record, { pidns_path: '', pidns_inode: 0 });
        return;
      case 'netns':
      case 'ipcns':
      case 'utsns':
      case 'userns':
        this.parts.pins.unpin(ref);
        return;
      case 'cgroup':
        // An older berth recorded a parent the caller named: shared with other pods, never berth's.
        if (ref !== ownCgroupParent('cgroupfs', podId) && ref !== ownCgroupParent('systemd', podId)) return;
        // A slice berth created is systemd's unit: stopping it removes the cgroup.
        if (this.parts.systemd && ref.endsWith('.slice')) await this.parts.systemd.remove(ref);
        // Only the pod's own directory, once its containers' cgroups are gone (never recursive).
        else this.parts.cgroups.remove(ref);
        return;
      case 'statedir':
        // A mount left under it (shm) must never be descended into by rm.
        umountIfMounted(native, join(ref, 'shm'));
        await rm(ref, { recursive: true, force: true });
        return;
    }
  }
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
