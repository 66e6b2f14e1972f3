// Recovery at start: finishes what a crash or a failed call left. Runs that
// never completed are undone, failed teardowns retried, pods whose namespaces
// vanished (a reboot) marked NOTREADY, and pins and CNI attachments that no
// pod claims removed. Pods with a PID-namespace holder are checked against
// one scan of /proc for all of them (read in one batch off the event loop),
// not one scan per pod.
import { promises as fsp } from 'node:fs';
import { describeError } from '../errors';
import { aliveInStat } from '../oci/host-process';
import { STOP_KINDS } from './pod-resource-journal';
import type { SandboxParts } from './pod-sandboxes';
import type { SandboxRecord } from './sandbox-records';

/** What recovery at start found and did. */
export interface RecoveryReport {
  loaded: number;
  undone: string[];
  markedNotReady: string[];
  failures: { id: string; error: string }[];
  cniGc: { removed: string[]; failed: { id: string; error: string }[] };
}

export async function recoverSandboxes(parts: SandboxParts): Promise<RecoveryReport> {
  const { records, journal } = parts;
  const report: RecoveryReport = { loaded: records.index.size, undone: [], markedNotReady: [], failures: [], cniGc: { removed: [], failed: [] } };
  const holding = [...records.index.all()].some((r) => r.row.phase === 'ready' && r.row.pid_holder > 0) ? await podsWithPidHolder(parts) : new Set<string>();
  for (const record of [...records.index.all()]) {
    const id = record.row.id;
    await parts.locks.with(id, async () => {
      try {
        if (record.row.phase === 'creating' || record.row.phase === 'failed') {
          await journal.undoAll(record);
          records.forget(id);
          report.undone.push(id);
          return;
        }
        if (record.row.phase === 'ready' && !stillAlive(parts, record, holding)) {
          records.update(record, { phase: 'stopped' });
          report.markedNotReady.push(id);
        }
        if (record.row.phase === 'stopped') {
          const failures = await journal.undo(record, STOP_KINDS);
          if (failures.length > 0) throw new Error(failures.join('; '));
        }
      } catch (err) {
        report.failures.push({ id, error: describeError(err) });
      }
    });
  }
  report.failures.push(...(await journal.undoOrphans()));

  const known = new Set<string>();
  for (const { row } of records.index.all()) {
    for (const path of [row.pidns_path, row.netns_path, row.ipcns_path, row.utsns_path, row.userns_path]) if (path) known.add(path);
  }
  const orphanPins = parts.pins.unpinOrphans(known);
  report.undone.push(...orphanPins.unpinned.map((path) => `orphan ${path}`));
  report.failures.push(...orphanPins.failures.map((f) => ({ id: f.path, error: f.error })));

  const attached = new Set<string>();
  for (const { row } of records.index.all()) if (journal.holds(row.id, 'cni')) attached.add(row.id);
  report.cniGc = await parts.network.collectGarbage(attached).catch((err: unknown) => ({ removed: [], failed: [{ id: 'gc', error: describeError(err) }] }));
  return report;
}

/** Ids of the pods whose PID-namespace holder runs (pid-holder.ts: the pause binary with --new-pid-ns and the pod id). */
async function podsWithPidHolder(parts: SandboxParts): Promise<Set<string>> {
  const pods = new Set<string>();
  let pids: string[];
  try {
    pids = (await fsp.readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return pods;
  }
  const texts = await parts.native.readSmallFiles(pids.flatMap((p) => [`/proc/${p}/cmdline`, `/proc/${p}/stat`]), 64 * 1024);
  pids.forEach((_, i) => {
    const [cmdline, stat] = [texts[2 * i], texts[2 * i + 1]];
    if (cmdline === null || stat === null || !aliveInStat(stat)) return;
    const args = cmdline.split('\0');
    const at = args.indexOf('--new-pid-ns');
    if (at >= 0 && args[at + 1]) pods.add(args[at + 1]);
  });
  return pods;
}

/** Whether the pod's namespaces and PID holder are still there (a reboot leaves the rows, not the kernel objects). */
function stillAlive(parts: SandboxParts, record: SandboxRecord, holding: ReadonlySet<string>): boolean {
  const { row } = record;
  if (!parts.pins.allPinned({ net: row.netns_path, ipc: row.ipcns_path, uts: row.utsns_path, user: row.userns_path })) return false;
  if (row.pid_holder > 0 && !holding.has(row.id)) return false;
  if (row.pidns_path && !parts.pins.holdsPidNamespace(row.pidns_path, row.pidns_inode)) return false;
  return true;
}
