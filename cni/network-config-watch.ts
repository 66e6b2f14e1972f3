// The conf dir, watched: a cluster's CNI DaemonSet drops its conflist in while
// berthd runs, and the next pod must get that network without a restart
// (containerd does the same with fsnotify). Every change re-selects the network
// off the request path (debounced: a plugin installer writes several files);
// ADD and Status read the last selection. Pods already attached keep theirs:
// DEL and CHECK replay the config cached at ADD (result-cache.ts).
import { mkdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { selectNetwork, type NetworkSelection } from './network-config-dir';

export interface NetworkConfigWatchOptions {
  confDir: string;
  /** Told every selection that differs from the one before (the first one too). */
  onChange?: (selection: NetworkSelection, previous: NetworkSelection | undefined) => void;
  /** Quiet time after the last event before the dir is read again. */
  debounceMs?: number;
  /** How often a dir that is gone or was replaced is looked for again (inotify cannot see that). */
  recheckMs?: number;
}

const DEFAULT_DEBOUNCE_MS = 100;
const DEFAULT_RECHECK_MS = 5_000;

export class NetworkConfigWatch {
  private current: NetworkSelection | undefined;
  private watcher: FSWatcher | undefined;
  private watchedIno: number | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanWanted = false;
  private closed = false;

  constructor(private readonly options: NetworkConfigWatchOptions) {}

  /** Creates the conf dir if missing (as containerd does), reads it, and starts watching. */
  async start(): Promise<void> {
    mkdirSync(this.options.confDir, { recursive: true, mode: 0o755 });
    this.arm();
    await this.rescan();
    this.recheck = setInterval(() => this.checkDir(), this.options.recheckMs ?? DEFAULT_RECHECK_MS);
    this.recheck.unref();
  }

  /** The last selection read (start() has read the first). */
  selection(): NetworkSelection {
    if (!this.current) throw new Error('the CNI conf dir watch has not started');
    return this.current;
  }

  /** Reads the dir again now; resolves once a scan that began after this call has finished. */
  async rescan(): Promise<void> {
    this.rescanWanted = true;
    while (this.rescanWanted && !this.closed) {
      this.scanning ??= this.scanLoop().finally(() => (this.scanning = undefined));
      await this.scanning;
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.recheck);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private async scanLoop(): Promise<void> {
    do {
      this.rescanWanted = false;
      const next = await selectNetwork(this.options.confDir);
      const previous = this.current;
      this.current = next;
      if (!sameSelection(previous, next)) this.options.onChange?.(next, previous);
    } while (this.rescanWanted && !this.closed);
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.rescan(), this.options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    this.debounce.unref();
  }

  /** Watches the dir as it is now; a dir that is missing is looked for again by checkDir. */
  private arm(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watchedIno = undefined;
    try {
      this.watchedIno = statSync(this.options.confDir).ino;
      const watcher = watch(this.options.confDir, { persistent: false }, () => this.schedule());
      watcher.on('error', () => {
        // The dir was removed: inotify drops the watch. checkDir arms a new one when it is back.
        if (this.watcher === watcher) {
          watcher.close();
          this.watcher = undefined;
          this.schedule();
        }
      });
      this.watcher = watcher;
    } catch {
      this.watcher = undefined;
    }
  }

  /** Re-arms when the dir came back or was replaced by another (a rename over it keeps the old inode watched). */
  private checkDir(): void {
    if (this.closed) return;
    let ino: number | undefined;
    try {
      ino = statSync(this.options.confDir).ino;
    } catch {
      ino = undefined;
    }
    if (ino !== this.watchedIno || (ino !== undefined && !this.watcher)) {
      this.arm();
      this.schedule();
    }
  }
}

function sameSelection(a: NetworkSelection | undefined, b: NetworkSelection): boolean {
  if (!a) return false;
  return (
    a.network?.path === b.network?.path &&
    JSON.stringify(a.network?.list) === JSON.stringify(b.network?.list) &&
    a.skipped.join('\n') === b.skipped.join('\n')
  );
}
