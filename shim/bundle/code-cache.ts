// V8's code cache for the bundle, and the record of how berthd's code was
// started (bundle or not, cache used or why not), which the serving line
// carries. The record is kept on a global symbol: the runner loads this file
// from dist/, the daemon has its own copy inside the bundle.
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Script } from 'node:vm';

export interface StartRecord {
  /** 'used', or 'not used: why'. */
  bundle: string;
  /** 'used', or why not ('none yet', 'rejected by V8', 'stale', ...). */
  codeCache?: string;
  /** Reading, compiling and running the bundle's top level (ms). */
  compileMs?: number;
  script?: Script;
  sha256?: string;
  /** Where the code cache is read and written (the launcher says: BERTH_CODE_CACHE). */
  cachePath?: string;
  /** Node's startup snapshot: 'used', 'off' (the launcher names none), or 'not used: why' (the launcher says why). */
  snapshot?: string;
  /** The blob to check again after the start (takeSnapshotRecheck), when a pending file kept it from this start. */
  snapshotRecheck?: SnapshotRecheck;
}

const RECORD = Symbol.for('berth.start-record');
type WithRecord = { [RECORD]?: StartRecord };

export function recordStart(record: StartRecord): StartRecord {
  (globalThis as WithRecord)[RECORD] = record;
  return record;
}

/** How this process's code was started: undefined when not through the runner (tests in-process). */
export function startRecord(): StartRecord | undefined {
  return (globalThis as WithRecord)[RECORD];
}

/** What the serving line says about it. */
export function startRecordSummary(): { bundle: string; codeCache?: string; compileMs?: number; snapshot?: string } | undefined {
  const record = startRecord();
  return record && { bundle: record.bundle, codeCache: record.codeCache, compileMs: record.compileMs, snapshot: record.snapshot };
}

/** The launcher's environment variable naming the code cache file; taken out of the environment (children do not need it). */
export const CODE_CACHE_ENV = 'BERTH_CODE_CACHE';

export function takeCodeCachePath(): string | undefined {
  const path = process.env[CODE_CACHE_ENV];
  delete process.env[CODE_CACHE_ENV];
  return path || undefined;
}

/**
 * The launcher's environment variable saying why it started Node without the startup snapshot (berthd-launcher.ts);
 * taken out of the environment like the code cache's.
 */
export const SNAPSHOT_ENV = 'BERTH_SNAPSHOT';
/** What the snapshot's main function (snapshot-entry.ts) leaves on the global object before it runs the runner. */
const SNAPSHOT_MARK = Symbol.for('berth.snapshot');

/**
 * The launcher's environment variables naming the blob and its pending files' prefix when a pending file left by
 * an earlier start kept this one from the blob: that start may have been refused by Node, or only killed before
 * berthd's code ran; berthd checks the blob once it serves (snapshot-recheck.ts).
 */
export const SNAPSHOT_RECHECK_BLOB_ENV = 'BERTH_SNAPSHOT_RECHECK_BLOB';
export const SNAPSHOT_RECHECK_PENDING_ENV = 'BERTH_SNAPSHOT_RECHECK_PENDING';

export interface SnapshotRecheck {
  blob: string;
  /** The pending files' path without the `.<pid>` suffix. */
  pending: string;
}

export function takeSnapshotRecheck(): SnapshotRecheck | undefined {
  const blob = process.env[SNAPSHOT_RECHECK_BLOB_ENV];
  const pending = process.env[SNAPSHOT_RECHECK_PENDING_ENV];
  delete process.env[SNAPSHOT_RECHECK_BLOB_ENV];
  delete process.env[SNAPSHOT_RECHECK_PENDING_ENV];
  return blob && pending ? { blob, pending } : undefined;
}

/** Whether this process started from berthd's startup snapshot, or why not. */
export function takeSnapshotState(): string {
  const why = process.env[SNAPSHOT_ENV];
  delete process.env[SNAPSHOT_ENV];
  if ((globalThis as { [SNAPSHOT_MARK]?: unknown })[SNAPSHOT_MARK]) return 'used';
  return why ? `not used: ${why}` : 'off';
}

const HEADER_BYTES = 65;

export function readCodeCache(path: string | undefined, sha256: string): { data?: Buffer; reason: string } {
  if (!path) return { reason: 'off' };
  let file;
  try {
    file = readFileSync(path);
  } catch {
    return { reason: 'none yet' };
  }
  if (file.length <= HEADER_BYTES || file.toString('latin1', 0, 64) !== sha256) return { reason: 'stale' };
  return { data: file.subarray(HEADER_BYTES), reason: 'used' };
}

/**
 * Writes the running bundle's code cache (atomically) when the one it started with was not used: once per
 * bundle, Node and flags. Made after a start, it holds the functions the start compiled, not only the
 * modules' top levels. undefined when there is nothing to write; throws when it cannot be written.
 */
export function writeCodeCache(): { path: string; bytes: number; ms: number } | undefined {
  const record = startRecord();
  if (!record?.script || !record.sha256 || !record.cachePath || record.codeCache === 'used') return undefined;
  const started = performance.now();
  const data = record.script.createCachedData();
  const path = record.cachePath;
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, Buffer.concat([Buffer.from(`${record.sha256}\n`, 'latin1'), data]), { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // not written
    }
    throw err;
  }
  // Written once: a later call in this process (none today) has nothing to add.
  record.codeCache = 'used';
  return { path, bytes: data.length, ms: Math.round((performance.now() - started) * 10) / 10 };
}
