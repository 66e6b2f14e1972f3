// ReopenContainerLog: after the kubelet rotated a container's log file, conmon
// is told to reopen it, and the call returns once the new file exists (the
// kubelet, and critest, look for it as soon as the call returns).
import { statSync } from 'node:fs';
import { failedPrecondition, internal } from '../errors';
import { reopenConmonLog } from '../oci/conmon';
import type { ContainerContext } from './container-context';
import { waitForFile } from './wait-for-file';

const REOPEN_WAIT_MS = 5_000;

export async function reopenContainerLog(ctx: ContainerContext, idOrPrefix: string): Promise<void> {
  const record = ctx.exits.refresh(ctx.records.require(idOrPrefix));
  if (record.phase !== 'running') throw failedPrecondition(`container ${record.id} is not running`);
  // Still there: not rotated, conmon reopens the same file and nothing new appears.
  const rotated = !fileExists(record.logPath);
  const reopened = rotated ? waitForFile(record.logPath, REOPEN_WAIT_MS) : Promise.resolve(true);
  reopenConmonLog(record.dir);
  if (await reopened) return;
  throw internal(`container ${record.id}: conmon did not reopen ${record.logPath} within ${REOPEN_WAIT_MS / 1000} s`);
}

function fileExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
