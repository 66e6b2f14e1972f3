// berth's persistent state: one SQLite database in WAL mode under the root dir.
// Each part of the model owns its tables and brings its own migrations, applied
// in order and recorded, so a newer berthd opens an older database.
import BetterSqlite3 from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type SqliteDatabase = BetterSqlite3.Database;

export interface Migration {
  /** Owner of the tables, e.g. "images" or "sandboxes". */
  owner: string;
  /** 1, 2, 3 … per owner; applied once, in order. */
  version: number;
  sql: string;
}

let addonPath: string | null | undefined;

/**
 * better-sqlite3's addon, named for it: by default it asks `bindings`, which finds the addon from the
 * calling file on the call stack, and in berthd's bundle (shim/bundle/) that file is the bundle.
 * null (better-sqlite3's own lookup) when it is not where a build or a prebuilt download puts it.
 */
function sqliteAddon(): string | null {
  if (addonPath === undefined) {
    const path = join(dirname(require.resolve('better-sqlite3')), '..', 'build', 'Release', 'better_sqlite3.node');
    addonPath = existsSync(path) ? path : null;
  }
  return addonPath;
}

export class BerthDatabase {
  readonly db: SqliteDatabase;

  constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new BetterSqlite3(path, { nativeBinding: sqliteAddon() ?? undefined });
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode is durable across a berthd crash (only an OS crash can
    // lose the newest transactions), which is the failure restart recovery handles.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      owner TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL,
      PRIMARY KEY (owner, version))`);
  }

  /** Applies the migrations of one owner that this database has not seen yet. */
  migrate(migrations: readonly Migration[]): void {
    const applied = this.db.prepare('SELECT 1 FROM schema_migrations WHERE owner = ? AND version = ?');
    const record = this.db.prepare('INSERT INTO schema_migrations (owner, version, applied_at) VALUES (?, ?, ?)');
    // Not localeCompare: its first call loads ICU's collation data (~5 ms of berthd's start).
    const sorted = [...migrations].sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : a.version - b.version));
    for (const m of sorted) {
      if (applied.get(m.owner, m.version)) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        record.run(m.owner, m.version, new Date().toISOString());
      })();
    }
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
