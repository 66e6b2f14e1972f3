// What the OCI runtime itself recorded about a container's init process: its
// pid and its start time (clock ticks after boot, /proc/<pid>/stat field 22).
// Together they name one process for good, where a pid alone may be reused.
// runc keeps them in <root>/<id>/state.json, crun in <root>/<id>/status; both
// files are the runtime's own, under berth's runtime root.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface InitProcess {
  pid: number;
  startTime: string;
}

/** The container's init as its runtime recorded it; undefined when no known state file says. */
export function readInitProcess(runtime: { root: string }, id: string): InitProcess | undefined {
  const runc = readJson(join(runtime.root, id, 'state.json'));
  if (runc && typeof runc.init_process_pid === 'number' && runc.init_process_start !== undefined) {
    return { pid: runc.init_process_pid, startTime: String(runc.init_process_start) };
  }
  const crun = readJson(join(runtime.root, id, 'status'));
  if (crun && typeof crun.pid === 'number' && crun['process-start-time'] !== undefined) {
    return { pid: crun.pid, startTime: String(crun['process-start-time']) };
  }
  return undefined;
}

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
