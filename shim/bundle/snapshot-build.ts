// Writes berthd's startup snapshot (dist/shim/berthd.snapshot) after the
// bundle: Node, run with berthd's V8 flags, loads the builtins berthd needs
// (snapshot-entry.ts) and writes its heap to the blob, which a launcher then
// names with --snapshot-blob (berthd-launcher.ts). Why: berthd's flags make V8
// refuse Node's code cache of its builtins, so each start compiled ~110 of
// them from source (bench/README.md, "Start from a startup snapshot").
//
// Node accepts a blob only from the same Node version and the same V8 flags,
// and exits (code 14) rather than start without it; so a blob is built with the
// launcher's flags, checked by starting Node from it once before it replaces
// the old one, and given the modification time of the Node binary that built
// it: the launcher uses it only while the two times are equal (a Node upgrade,
// or a write to the blob, makes them differ). A build that cannot make one
// removes the old blob and says so, and berthd starts without it.
//   node dist/shim/bundle/snapshot-build.js [ROOT]    (`npm run build` runs it)
import { spawnSync } from 'node:child_process';
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BERTHD_NODE_FLAGS } from '../node-flags';
import { PACKAGE_ROOT, SNAPSHOT_PATH } from './bundle-file';

/** The snapshot's build script (compiled beside this file). */
export const SNAPSHOT_ENTRY_PATH = join(__dirname, 'snapshot-entry.js');
/** The V8 flags a blob is built with: a launcher names the blob only with the same (Node refuses it otherwise). */
export const SNAPSHOT_FLAGS: readonly string[] = BERTHD_NODE_FLAGS;
/**
 * Each start from the blob leaves a file named this, with the launcher's pid as suffix, in a directory berthd
 * writes, until berthd's code runs (snapshot-entry.ts removes it): one left by a process that is gone is a start
 * Node refused or that crashed before berthd's code, and the launcher then starts without the blob.
 */
export const SNAPSHOT_PENDING_NAME = 'berthd.snapshot-pending';

export class SnapshotError extends Error {}

/** Removes the pending files a launcher left in dir (a new blob gets a new chance). */
export function clearPendingMarks(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(`${SNAPSHOT_PENDING_NAME}.`)) rmSync(join(dir, name), { force: true });
}

/** What a start from a blob says it holds (snapshot-entry.ts, BERTH_SNAPSHOT_CHECK). */
export interface SnapshotCheck {
  node: string;
  builtins: number;
  loaded: number;
  /** A worker thread ran and saw the process's cwd. */
  workerCwd: boolean;
}

/** Starts Node from the blob once, as a launcher would (same Node, same flags): what it holds, or why it failed. */
export function checkSnapshot(blob: string, node: string = process.execPath, flags: readonly string[] = SNAPSHOT_FLAGS): SnapshotCheck {
  const run = spawnSync(node, [...flags, '--snapshot-blob', blob], { encoding: 'utf8', env: { ...process.env, BERTH_SNAPSHOT_CHECK: '1', NODE_OPTIONS: '' }, timeout: 60_000 });
  if (run.status !== 0) throw new SnapshotError(`Node did not start from it (${run.signal ?? `exit ${run.status}`}): ${run.stderr.trim().split('\n').slice(0, 3).join(' ')}`);
  try {
    return JSON.parse(run.stdout) as SnapshotCheck;
  } catch {
    throw new SnapshotError(`its check printed ${JSON.stringify(run.stdout.slice(0, 200))}`);
  }
}

/** Builds the blob at out with this Node and the snapshot's flags, checks it, and puts it in place (atomically). */
export function writeSnapshot(out: string = SNAPSHOT_PATH): SnapshotCheck & { path: string } {
  const tmp = `${out}.${process.pid}.tmp`;
  const config = `${tmp}.json`;
  try {
    // Without Node's code cache of its builtins (3 MiB Node keeps in malloc'd memory for the process's life,
    // 2/3 of the blob): the builtins berthd loads before serving are in the blob's heap, compiled; only the
    // ones loaded later (http, worker_threads) compile from source (bench/README.md, "Idle memory (session 7)").
    // Node warns that some builtins (child_process, worker_threads...) are not yet verified in user snapshots: kept
    // out of the build's output unless the build fails.
    writeFileSync(config, JSON.stringify({ builder: SNAPSHOT_ENTRY_PATH, withoutCodeCache: true }));
    const builder = (how: string[]) =>
      spawnSync(process.execPath, [...SNAPSHOT_FLAGS, '--snapshot-blob', tmp, ...how], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 120_000 });
    let build = builder(['--build-snapshot-config', config]);
    // A Node 20 before 20.12 has no --build-snapshot-config (exit 9, bad option): a blob with the code cache.
    if (build.status === 9 && /bad option/.test(build.stderr)) build = builder(['--build-snapshot', SNAPSHOT_ENTRY_PATH]);
    if (build.status !== 0) {
      const said = build.stderr.split('\n').filter((line) => line && !/Warning: It's not yet fully verified|It may still work|To request support|--trace-warnings/.test(line));
      throw new SnapshotError(`node --build-snapshot failed (${build.signal ?? `exit ${build.status}`}): ${said.slice(0, 4).join(' ')}`);
    }
    const check = checkSnapshot(tmp);
    if (check.node !== process.version) throw new SnapshotError(`it says Node ${check.node}, this is ${process.version}`);
    if (!check.workerCwd) throw new SnapshotError('a worker thread started from it does not see the process\'s cwd');
    // The launcher's test of the Node binary: the same modification time, to the nanosecond (touch copies it exactly).
    const touch = spawnSync('touch', ['-r', process.execPath, tmp], { encoding: 'utf8' });
    if (touch.status !== 0) throw new SnapshotError(`touch -r ${process.execPath}: ${touch.stderr.trim()}`);
    renameSync(tmp, out);
    return { ...check, path: out };
  } finally {
    rmSync(tmp, { force: true });
    rmSync(config, { force: true });
  }
}

if (require.main === module) {
  const root = resolve(process.argv[2] ?? PACKAGE_ROOT);
  const out = root === PACKAGE_ROOT ? SNAPSHOT_PATH : join(root, 'dist', 'shim', 'berthd.snapshot');
  try {
    const built = writeSnapshot(out);
    process.stdout.write(`snapshot: ${built.path}: ${built.builtins} builtins (${built.loaded} modules loaded at its start), Node ${built.node}\n`);
  } catch (err) {
    // berthd starts without a blob (the launcher says why): a Node whose snapshots fail costs the start, not the build.
    rmSync(out, { force: true });
    process.stderr.write(`snapshot: not written, berthd will start without one: ${err instanceof SnapshotError ? err.message : (err as Error).stack}\n`);
  }
  // The build's launcher (dist/berthd) keeps its pending files beside the bundle's code cache, in this directory.
  clearPendingMarks(dirname(out));
}
