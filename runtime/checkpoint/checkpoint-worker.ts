// The worker-thread side of checkpoint-jobs.ts: one job per thread, its answer
// posted once.
import { parentPort, workerData } from 'node:worker_threads';
import { loadNative } from '../../native';
import { BerthError, describeError } from '../errors';
import { exportCheckpoint } from './checkpoint-export';
import type { CheckpointJob, FromCheckpointWorker } from './checkpoint-jobs';
import { applyRootfsDiff, diffBudget, removeDeletedPaths } from './rootfs-diff';

async function run(job: CheckpointJob): Promise<unknown> {
  const native = loadNative();
  switch (job.op) {
    case 'export':
      return exportCheckpoint(native, job.job);
    case 'apply-diff':
      await applyRootfsDiff(native, job.tarPath, job.upperDir, diffBudget(job.maxBytes, job.maxEntries));
      return null;
    case 'remove-deleted':
      return { removed: removeDeletedPaths(job.rootfs, job.deleted) };
  }
}

run(workerData as CheckpointJob).then(
  (result) => parentPort!.postMessage({ ok: true, result } satisfies FromCheckpointWorker),
  (err: unknown) => parentPort!.postMessage({ ok: false, kind: err instanceof BerthError ? err.kind : undefined, message: describeError(err) } satisfies FromCheckpointWorker),
);
