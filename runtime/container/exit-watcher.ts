// How berth learns that a container exited: conmon writes an exit file into
// the bundle (and a record into the exit directory, which is watched), or the
// monitor dies without one. Applies what it learns to the container's record
// and publishes CONTAINER_STOPPED_EVENT once.
import { watch, type FSWatcher } from 'node:fs';
import { nowUnixNanos, unixMillisToNanos } from '../common/clock';
import type { RuntimeLog } from '../common/log';
import { describeError } from '../errors';
import { type ConmonExit, isConmonOf, readExit } from '../oci/conmon';
import { processAlive } from '../oci/host-process';
import { awaitsRestore, type ContainerRecord } from './container-store';
import type { ContainerRecords } from './container-records';

/** How often a waiter looks for itself, should a monitor die without an exit file (no event comes then). */
const EXIT_SAFETY_NET_MS = 250;

export class ExitWatcher {
  private watcher: FSWatcher | undefined;
  private closed = false;
  /** Woken when conmon writes a container's exit record (keyed by container id). */
  private readonly wakers = new Map<string, Set<() => void>>();
  /** Containers being started: an exit seen meanwhile is applied once the start is recorded. */
  private readonly starting = new Set<string>();

  constructor(
    private readonly records: ContainerRecords,
    private readonly exitDir: string,
    private readonly log: RuntimeLog,
  ) {}

  /** Applies conmon's exit file to a created/running record. */
  refresh(record: ContainerRecord): ContainerRecord {
    if (record.phase !== 'running' && record.phase !== 'created') return record;
    if (this.starting.has(record.id)) return record;
    const exit = readExit(record.dir);
    return exit ? this.apply(record, exit) : record;
  }

  /** Records an exit conmon wrote (read by the caller) on a created/running record, and says so once. */
  apply(record: ContainerRecord, exit: ConmonExit): ContainerRecord {
    record.phase = 'exited';
    record.exitCode = exit.exitCode;
    record.finishedAt = unixMillisToNanos(exit.finishedAtMs);
    if (record.startedAt === '0') record.startedAt = record.finishedAt;
    record.reason = exit.oomKilled ? 'OOMKilled' : exit.exitCode === 0 ? 'Completed' : 'Error';
    if (!record.message && exit.oomKilled) record.message = 'the container exceeded its memory limit';
    record.pid = 0;
    this.records.save(record);
    this.records.publish('CONTAINER_STOPPED_EVENT', record);
    return record;
  }

  /** The monitor is gone without an exit file: the container is reported exited with an unknown code. */
  markLost(record: ContainerRecord): void {
    if (readExit(record.dir)) return void this.refresh(record);
    const wasRunning = record.phase === 'running';
    const unrestored = awaitsRestore(record);
    record.phase = 'exited';
    record.exitCode = 255;
    record.finishedAt = nowUnixNanos();
    record.reason = 'Error';
    record.message = unrestored
      ? 'stopped before it was restored from its checkpoint'
      : 'the container monitor (conmon) exited without recording an exit code';
    this.records.save(record);
    if (wasRunning) this.records.publish('CONTAINER_STOPPED_EVENT', record);
  }

  /**
   * Waits for conmon's exit file; true when the container exited. Woken by
   * the exit directory's watch; the periodic look is only a safety net for a
   * monitor that died without writing one.
   */
  async waitExit(record: ContainerRecord, timeoutMs: number, cancelled?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.refresh(record);
      if (record.phase === 'exited') return true;
      // Without its monitor no exit file will come: a running container counts as exited once its process is gone.
      if (!isConmonOf(record.conmonPid, record.id) && (record.phase === 'created' || !processAlive(record.pid))) return this.markLost(record), true;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || cancelled?.aborted) return false;
      await this.nextExitEvent(record.id, Math.min(remaining, EXIT_SAFETY_NET_MS), cancelled);
    }
  }

  /**
   * Runs a container's start with its exit held back: a container that exits
   * at once is reported started, then stopped (one STOPPED event, after STARTED).
   */
  async holdExitWhile<T>(id: string, start: () => Promise<T>): Promise<T> {
    this.starting.add(id);
    try {
      return await start();
    } finally {
      this.starting.delete(id);
    }
  }

  /** A promise settled once the container exited or its monitor is gone; cancel() stops watching. */
  exitWatch(record: ContainerRecord): { exited: Promise<void>; cancel: () => void } {
    let cancelled = false;
    const exited = (async () => {
      while (!cancelled) {
        if (readExit(record.dir) || !isConmonOf(record.conmonPid, record.id)) return;
        await this.nextExitEvent(record.id, EXIT_SAFETY_NET_MS);
      }
      await new Promise<never>(() => undefined);
    })();
    return { exited, cancel: () => void (cancelled = true) };
  }

  /**
   * Whether exits are applied as they happen: conmon writes the bundle's exit
   * file before the exit directory's record, so every exit the watch sees is
   * applied then, and a list need not read every bundle.
   */
  get watching(): boolean {
    return this.watcher !== undefined;
  }

  /** Watches the exit directory, so exits are noticed (and published) as they happen. */
  watch(): void {
    if (this.watcher || this.closed) return;
    try {
      this.watcher = watch(this.exitDir, (_event, file) => {
        if (!file) return;
        // conmon writes "<id>.XXXXXX" and renames it to "<id>".
        const id = String(file);
        const record = this.records.exact(id);
        if (record) this.refresh(record);
        for (const wake of [...(this.wakers.get(id) ?? [])]) wake();
      });
      this.watcher.on('error', (err) => {
        this.log.warn({ err: describeError(err) }, 'the exit directory\'s watch failed; exits are noticed on the next call');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'cannot watch the exit directory; exits are noticed on the next call');
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Resolves at the next exit-file event for `id`, after `ms`, or once `cancelled` aborts. */
  private nextExitEvent(id: string, ms: number, cancelled?: AbortSignal): Promise<void> {
    this.watch();
    return new Promise((resolve) => {
      let wakers = this.wakers.get(id);
      if (!wakers) this.wakers.set(id, (wakers = new Set()));
      const set = wakers;
      const wake = (): void => {
        clearTimeout(timer);
        cancelled?.removeEventListener('abort', wake);
        set.delete(wake);
        if (set.size === 0 && this.wakers.get(id) === set) this.wakers.delete(id);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      cancelled?.addEventListener('abort', wake, { once: true });
      set.add(wake);
    });
  }
}
