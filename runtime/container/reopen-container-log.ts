// ReopenContainerLog: after the kubelet rotated a container's log file, conmon
// is told to reopen it, and the call returns once conmon writes the new file
// (the kubelet, and critest, look for it as soon as the call returns). conmon
// reopens by path, following links: it opens "<log>.tmp" with O_TRUNC and
// renames it over the log. So the log tree is checked again first (no link on
// the way, the log itself absent or a regular file) and berth makes
// "<log>.tmp" itself without following a link; conmon must end up holding
// that very file, now renamed into place.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { failedPrecondition, internal, isBerthError } from '../errors';
import { reopenConmonLog } from '../oci/conmon';
import type { ContainerContext } from './container-context';
import { existingLogFile, prepareLogFile, processHoldsFile, type LogFileIdentity, type LogLocation } from './container-log-file';

const REOPEN_WAIT_MS = 5_000;
const REOPEN_POLL_MS = 10;

export async function reopenContainerLog(ctx: ContainerContext, idOrPrefix: string): Promise<void> {
  const record = ctx.exits.refresh(ctx.records.require(idOrPrefix));
  if (record.phase !== 'running') throw failedPrecondition(`container ${record.id} is not running`);
  const location = recordedLocation(record.dir, record.logPath);
  let temp: LogFileIdentity;
  try {
    // The log itself may be gone (rotated away) or a regular file; a link or anything else is refused.
    existingLogFile(ctx.native, location);
    temp = prepareLogFile(ctx.native, { ...location, relPath: `${location.relPath}.tmp` });
  } catch (err) {
    // The request is fine; the log tree on the host is not (a link planted since the create).
    if (isBerthError(err, 'InvalidArgument')) throw failedPrecondition(`container ${record.id}: ${(err as Error).message}; the log is not reopened`);
    throw err;
  }
  reopenConmonLog(record.dir);
  const deadline = Date.now() + REOPEN_WAIT_MS;
  while (Date.now() < deadline) {
    if (processHoldsFile(record.conmonPid, temp) && inodeAt(record.logPath) === temp.ino) return;
    await new Promise((r) => setTimeout(r, REOPEN_POLL_MS));
  }
  throw internal(`container ${record.id}: conmon did not reopen ${record.logPath} within ${REOPEN_WAIT_MS / 1000} s`);
}

/** The location a record's log path was made at: the bundle's console.log, else a path with no link from "/". */
function recordedLocation(bundleDir: string, logPath: string): LogLocation {
  if (logPath === join(bundleDir, 'console.log')) return { dir: bundleDir, relPath: 'console.log', dirMayFollow: true };
  return { dir: '/', relPath: logPath.replace(/^\/+/, ''), dirMayFollow: false };
}

function inodeAt(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}
