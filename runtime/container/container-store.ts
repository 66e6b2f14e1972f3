// Containers as SQLite rows: written before any host resource exists (state
// 'creating'), so a crash at any point leaves a row the next start can act on.
import type { BerthDatabase } from '../store/database';

export type ContainerPhase = 'creating' | 'created' | 'running' | 'exited' | 'removing';

export interface ContainerRecord {
  id: string;
  podSandboxId: string;
  name: string;
  attempt: number;
  phase: ContainerPhase;
  /** The CRI ContainerConfig as received (JSON). */
  configJson: string;
  imageRef: string;
  imageId: string;
  runtimeHandler: string;
  /** Holds config.json, rootfs/, upper/, work/ and conmon's files. */
  dir: string;
  logPath: string;
  /** Unix nanoseconds as decimal strings, "0" when not reached. */
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  pid: number;
  conmonPid: number;
  /** The OCI spec written (JSON, "" until built). */
  specJson: string;
  stopSignal: string;
  cgroupsPath: string;
  /** Resources as last applied (CRI LinuxContainerResources JSON). */
  resourcesJson: string;
  /**
   * A container created from a checkpoint: criu's images, restored by
   * StartContainer ("" for every other container, and once restored).
   */
  restoreImages: string;
}

/** A created container still to be restored: its criu images wait in the bundle, no monitor runs yet. */
export function awaitsRestore(record: ContainerRecord): boolean {
  return record.phase === 'created' && record.restoreImages !== '' && record.conmonPid === 0;
}

interface Row {
  id: string;
  pod_sandbox_id: string;
  name: string;
  attempt: number;
  phase: string;
  config_json: string;
  image_ref: string;
  image_id: string;
  runtime_handler: string;
  dir: string;
  log_path: string;
  created_at: string;
  started_at: string;
  finished_at: string;
  exit_code: number;
  reason: string;
  message: string;
  pid: number;
  conmon_pid: number;
  spec_json: string;
  stop_signal: string;
  cgroups_path: string;
  resources_json: string;
  restore_images: string;
}

const COLUMNS: [keyof ContainerRecord, keyof Row][] = [
  ['id', 'id'], ['podSandboxId', 'pod_sandbox_id'], ['name', 'name'], ['attempt', 'attempt'], ['phase', 'phase'],
  ['configJson', 'config_json'], ['imageRef', 'image_ref'], ['imageId', 'image_id'], ['runtimeHandler', 'runtime_handler'],
  ['dir', 'dir'], ['logPath', 'log_path'], ['createdAt', 'created_at'], ['startedAt', 'started_at'],
  ['finishedAt', 'finished_at'], ['exitCode', 'exit_code'], ['reason', 'reason'], ['message', 'message'], ['pid', 'pid'],
  ['conmonPid', 'conmon_pid'], ['specJson', 'spec_json'], ['stopSignal', 'stop_signal'], ['cgroupsPath', 'cgroups_path'],
  ['resourcesJson', 'resources_json'], ['restoreImages', 'restore_images'],
];

type Statement = ReturnType<BerthDatabase['db']['prepare']>;

export class ContainerStore {
  private readonly upsert: Statement;
  private readonly remove: Statement;

  constructor(private readonly database: BerthDatabase) {
    database.migrate([
      {
        owner: 'containers',
        version: 1,
        sql: `CREATE TABLE containers (
          id TEXT PRIMARY KEY, pod_sandbox_id TEXT NOT NULL, name TEXT NOT NULL, attempt INTEGER NOT NULL,
          phase TEXT NOT NULL, config_json TEXT NOT NULL, image_ref TEXT NOT NULL, image_id TEXT NOT NULL,
          runtime_handler TEXT NOT NULL, dir TEXT NOT NULL, log_path TEXT NOT NULL, created_at TEXT NOT NULL,
          started_at TEXT NOT NULL, finished_at TEXT NOT NULL, exit_code INTEGER NOT NULL, reason TEXT NOT NULL,
          message TEXT NOT NULL, pid INTEGER NOT NULL, conmon_pid INTEGER NOT NULL, spec_json TEXT NOT NULL,
          stop_signal TEXT NOT NULL, cgroups_path TEXT NOT NULL, resources_json TEXT NOT NULL);
          CREATE INDEX containers_by_pod ON containers (pod_sandbox_id);`,
      },
      { owner: 'containers', version: 2, sql: "ALTER TABLE containers ADD COLUMN restore_images TEXT NOT NULL DEFAULT ''" },
    ]);
    // Prepared once: preparing costs more than the write itself.
    const cols = COLUMNS.map(([, c]) => c);
    this.upsert = database.db.prepare(`INSERT OR REPLACE INTO containers (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`);
    this.remove = database.db.prepare('DELETE FROM containers WHERE id = ?');
  }

  all(): ContainerRecord[] {
    return (this.database.db.prepare('SELECT * FROM containers').all() as Row[]).map(fromRow);
  }

  /** Inserts or replaces the whole record. */
  save(record: ContainerRecord): void {
    this.upsert.run(toRow(record));
  }

  delete(id: string): void {
    this.remove.run(id);
  }
}

function fromRow(row: Row): ContainerRecord {
  const out: Record<string, unknown> = {};
  for (const [field, column] of COLUMNS) out[field] = row[column];
  return out as unknown as ContainerRecord;
}

function toRow(record: ContainerRecord): Row {
  const out: Record<string, unknown> = {};
  for (const [field, column] of COLUMNS) out[column] = record[field];
  return out as unknown as Row;
}
