// After a start the launcher made without the startup snapshot because an
// earlier start from it left its pending file (berthd-launcher.ts): that start
// may have been refused by Node (a damaged blob: it stays off until a build or
// installation) or only killed before berthd's code ran (a restart storm, a
// SIGKILL). berthd tells them apart once it serves: it starts Node from the
// blob as the build's check does (snapshot-entry.ts, BERTH_SNAPSHOT_CHECK:
// Node says what the blob holds and runs a worker), with its own V8 flags, in
// the background; when that works, the pending files of gone processes go
// and the next start uses the blob again.
import { execFile } from 'node:child_process';
import { access, readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SnapshotRecheck } from './code-cache';

export interface RecheckResult {
  /** Node started from the blob and its check passed. */
  taken: boolean;
  /** Pending files removed (taken only). */
  removed: string[];
  /** What failed, when not taken. */
  reason?: string;
}

/**
 * Starts Node from the blob once (this Node, and this process's flags unless told: berthd's, as the launcher
 * gave them) and clears the pending files of gone processes if it runs.
 */
export function recheckSnapshot(recheck: SnapshotRecheck, options: { flags?: readonly string[]; timeoutMs?: number } = {}): Promise<RecheckResult> {
  const { flags = process.execArgv, timeoutMs = 30_000 } = options;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...flags, '--snapshot-blob', recheck.blob],
      { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, BERTH_SNAPSHOT_CHECK: '1', NODE_OPTIONS: '' } },
      (err, stdout, stderr) => {
        let check: { workerCwd?: boolean } | undefined;
        try {
          check = JSON.parse(stdout) as { workerCwd?: boolean };
        } catch {
          check = undefined;
        }
        if (err || !check?.workerCwd) {
          const said = `${err ? err.message.split('\n')[0] : 'its check failed'} ${stderr.trim().split('\n').slice(0, 2).join(' ')}`.trim();
          resolve({ taken: false, removed: [], reason: said });
          return;
        }
        void removeGonePending(recheck.pending).then((removed) => resolve({ taken: true, removed }));
      },
    );
  });
}

/** Removes `<pending>.<pid>` files whose process is gone (one still starting keeps its own); off the event loop's thread. */
async function removeGonePending(pending: string): Promise<string[]> {
  const dir = dirname(pending);
  const prefix = `${basename(pending)}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = name.slice(prefix.length);
    if (/^\d+$/.test(pid) && (await access(`/proc/${pid}`).then(() => true, () => false))) continue;
    await rm(join(dir, name), { force: true }).catch(() => undefined);
    removed.push(join(dir, name));
  }
  return removed;
}
