// The sandboxes' rows in SQLite: one row per pod, and one row per host
// resource the pod owns, written before the resource is created so a crash at
// any step leaves a record of what to undo.
import type { Statement } from 'better-sqlite3';
import type { BerthDatabase } from '../store/database';

export type SandboxPhase = 'creating' | 'ready' | 'stopped' | 'failed';

/** Host resources a pod owns, in the order they are undone. */
export type ResourceKind = 'cni' | 'pidholder' | 'pidns' | 'shm' | 'netns' | 'ipcns' | 'utsns' | 'userns' | 'cgroup' | 'statedir';
export const TEARDOWN_ORDER: readonly ResourceKind[] = ['cni', 'pidholder', 'pidns', 'shm', 'netns', 'ipcns', 'utsns', 'userns', 'cgroup', 'statedir'];

export interface SandboxRow {
  id: string;
  name_key: string;
  config_json: string;
  runtime_handler: string;
  phase: SandboxPhase;
  created_at: string;
  ips_json: string;
  hostname: string;
  cgroup_parent: string;
  state_dir: string;
  netns_path: string;
  ipcns_path: string;
  utsns_path: string;
  /** The pod's pinned user namespace; "" when it uses the host's. */
  userns_path: string;
  pid_holder: number;
  /** The pin of the holder's PID namespace ("" without one) and that namespace's inode, checked before each use. */
  pidns_path: string;
  pidns_inode: number;
  shm_path: string;
  cni_result_json: string;
  last_error: string;
}

export interface ResourceRow {
  sandbox_id: string;
  kind: ResourceKind;
  ref: string;
}

const MIGRATIONS = [
  {
    owner: 'sandboxes',
    version: 1,
    sql: `
      CREATE TABLE pod_sandboxes (
        id TEXT PRIMARY KEY,
        name_key TEXT NOT NULL UNIQUE,
        config_json TEXT NOT NULL,
        runtime_handler TEXT NOT NULL,
        phase TEXT NOT NULL,
        created_at TEXT NOT NULL,
        ips_json TEXT NOT NULL DEFAULT '[]',
        hostname TEXT NOT NULL DEFAULT '',
        cgroup_parent TEXT NOT NULL DEFAULT '',
        state_dir TEXT NOT NULL DEFAULT '',
        netns_path TEXT NOT NULL DEFAULT '',
        ipcns_path TEXT NOT NULL DEFAULT '',
        utsns_path TEXT NOT NULL DEFAULT '',
        pid_holder INTEGER NOT NULL DEFAULT 0,
        shm_path TEXT NOT NULL DEFAULT '',
        cni_result_json TEXT NOT NULL DEFAULT '',
        last_error TEXT NOT NULL DEFAULT ''
      );
      CREATE TABLE pod_sandbox_resources (
        sandbox_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (sandbox_id, kind, ref)
      );`,
  },
  { owner: 'sandboxes', version: 2, sql: `ALTER TABLE pod_sandboxes ADD COLUMN userns_path TEXT NOT NULL DEFAULT '';` },
  {
    owner: 'sandboxes',
    version: 3,
    sql: `ALTER TABLE pod_sandboxes ADD COLUMN pidns_path TEXT NOT NULL DEFAULT '';
      ALTER TABLE pod_sandboxes ADD COLUMN pidns_inode INTEGER NOT NULL DEFAULT 0;`,
  },
];

export class SandboxStore {
  private resourcesQuery: Statement | undefined;

  constructor(private readonly database: BerthDatabase) {
    database.migrate(MIGRATIONS);
  }

  private get db() {
    return this.database.db;
  }

  all(): SandboxRow[] {
    return this.db.prepare('SELECT * FROM pod_sandboxes ORDER BY created_at').all() as SandboxRow[];
  }

  insert(row: SandboxRow): void {
    this.db
      .prepare(
        `INSERT INTO pod_sandboxes (id, name_key, config_json, runtime_handler, phase, created_at, ips_json, hostname, cgroup_parent,
          state_dir, netns_path, ipcns_path, utsns_path, userns_path, pid_holder, pidns_path, pidns_inode, shm_path, cni_result_json, last_error)
         VALUES (@id, @name_key, @config_json, @runtime_handler, @phase, @created_at, @ips_json, @hostname, @cgroup_parent,
          @state_dir, @netns_path, @ipcns_path, @utsns_path, @userns_path, @pid_holder, @pidns_path, @pidns_inode, @shm_path, @cni_result_json, @last_error)`,
      )
      .run(row);
  }

  update(id: string, fields: Partial<Omit<SandboxRow, 'id'>>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${k} = @${k}`).join(', ');
    this.db.prepare(`UPDATE pod_sandboxes SET ${sets} WHERE id = @id`).run({ ...fields, id });
  }

  delete(id: string): void {
    this.database.transaction(() => {
      this.db.prepare('DELETE FROM pod_sandbox_resources WHERE sandbox_id = ?').run(id);
      this.db.prepare('DELETE FROM pod_sandboxes WHERE id = ?').run(id);
    });
  }

  recordResource(id: string, kind: ResourceKind, ref: string): void {
    this.db.prepare('INSERT OR IGNORE INTO pod_sandbox_resources (sandbox_id, kind, ref) VALUES (?, ?, ?)').run(id, kind, ref);
  }

  forgetResource(id: string, kind: ResourceKind, ref: string): void {
    this.db.prepare('DELETE FROM pod_sandbox_resources WHERE sandbox_id = ? AND kind = ? AND ref = ?').run(id, kind, ref);
  }

  resources(id: string): ResourceRow[] {
    // Prepared once: recovery asks it for every pod (twice), at start, before serving.
    this.resourcesQuery ??= this.db.prepare('SELECT * FROM pod_sandbox_resources WHERE sandbox_id = ?');
    return this.resourcesQuery.all(id) as ResourceRow[];
  }

  /** Resources whose pod row is gone (a crash between the two deletes cannot happen, but a hand-edited db can). */
  orphanResources(): ResourceRow[] {
    return this.db
      .prepare('SELECT r.* FROM pod_sandbox_resources r LEFT JOIN pod_sandboxes s ON s.id = r.sandbox_id WHERE s.id IS NULL')
      .all() as ResourceRow[];
  }
}
