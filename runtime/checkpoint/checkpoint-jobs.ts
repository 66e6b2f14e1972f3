// The file work of a checkpoint and of a restore, each on a worker thread of
// its own (checkpoint-worker.ts): walking a writable layer, writing and
// unpacking tars are blocking calls over content of any size, which berthd's
// event loop must never wait on. A job that outlives its caller's deadline is
// ended by terminating its thread.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { BerthError, deadlineExceeded, internal, type BerthErrorKind } from '../errors';
import type { CheckpointExport, CheckpointExportResult } from './checkpoint-export';

export type CheckpointJob =
  | { op: 'export'; job: CheckpointExport }
  | { op: 'apply-diff'; tarPath: string; upperDir: string; maxBytes: number; maxEntries: number }
  | { op: 'remove-deleted'; rootfs: string; deleted: string[] };

export interface CheckpointJobResults {
  export: CheckpointExportResult;
  'apply-diff': null;
  'remove-deleted': { removed: number };
}

export type FromCheckpointWorker =
  | { ok: true; result: unknown }
  | { ok: false; kind?: BerthErrorKind; message: string };

/** Same limits as a layer worker: a job's own heap, not berthd's. */
const RESOURCE_LIMITS = { maxOldGenerationSizeMb: 512, maxYoungGenerationSizeMb: 64, stackSizeMb: 4 } as const;

/** Runs one job on a new worker thread; DEADLINE_EXCEEDED (the thread terminated) when `deadline` (ms since epoch) passes first. */
export function runCheckpointJob<J extends CheckpointJob>(job: J, deadline = Number.POSITIVE_INFINITY): Promise<CheckpointJobResults[J['op']]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'checkpoint-worker.js'), { workerData: job, resourceLimits: RESOURCE_LIMITS });
    let settled = false;
    const finish = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome();
      void worker.terminate();
    };
    const left = deadline - Date.now();
    const timer = Number.isFinite(deadline)
      ? setTimeout(() => finish(() => reject(deadlineExceeded(`${job.op} did not finish before the deadline`))), Math.max(0, Math.min(left, 2 ** 31 - 1)))
      : undefined;
    worker.on('message', (message: FromCheckpointWorker) => {
      finish(() => {
        if (message.ok) resolve(message.result as CheckpointJobResults[J['op']]);
        else reject(message.kind ? new BerthError(message.kind, message.message) : internal(`${job.op}: ${message.message}`));
      });
    });
    worker.on('error', (err) => finish(() => reject(internal(`${job.op}: ${err.message}`, err))));
    worker.on('exit', (code) => finish(() => reject(internal(`${job.op}: its worker exited (code ${code}) without an answer`))));
  });
}
