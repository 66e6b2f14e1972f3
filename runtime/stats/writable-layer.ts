// Bytes and inodes each container's writable layer (its overlay upper dir)
// holds, as du counts them: allocated blocks, each inode once however many
// links it has. Walking trees is slow and grows with what containers write,
// so it never happens on a request: a background meter walks one layer at a
// time, one entry at a time, at a bounded rate, and a stats call reads the
// latest measurement with the time it was taken. A walk never crosses into a
// mount point (another filesystem, or a bind mount of the same one).
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowUnixNanos } from '../common/clock';
import { mountPointsWithin } from '../common/mount-table';

const unixNanos = (): bigint => BigInt(nowUnixNanos());

export interface LayerUsage {
  usedBytes: number;
  inodesUsed: number;
}

export interface LayerMeasurement extends LayerUsage {
  /** Unix nanoseconds when the walk finished. */
  timestampNs: bigint;
  /** false when the walk stopped at the entry cap (the figures are a floor). */
  complete: boolean;
}

/** A walk stops counting here, so one runaway container cannot keep the meter from the others. */
const MAX_ENTRIES = 1_000_000;

export interface WalkOptions {
  /** Mount points (absolute paths) the walk must not enter. */
  mountPoints?: ReadonlySet<string>;
  /** Awaited every PACE_BATCH entries: where the background meter holds its rate. */
  pace?: (entriesSoFar: number) => Promise<void>;
  maxEntries?: number;
}

export const PACE_BATCH = 256;

/** du of `root`: undefined when root is missing; never enters another filesystem or a listed mount point. */
export async function measureDirectory(root: string, options: WalkOptions = {}): Promise<(LayerUsage & { complete: boolean }) | undefined> {
  const mountPoints = options.mountPoints ?? new Set<string>();
  const maxEntries = options.maxEntries ?? MAX_ENTRIES;
  let rootDev: bigint;
  try {
    const st = await lstat(root, { bigint: true });
    if (!st.isDirectory()) return undefined;
    rootDev = st.dev;
  } catch {
    return undefined;
  }
  const seen = new Set<string>();
  let usedBytes = 0;
  let entries = 0;
  const pending: string[] = [root];
  while (pending.length && entries < maxEntries) {
    const path = pending.pop()!;
    if (path !== root && mountPoints.has(path)) continue;
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      continue; // removed while walking
    }
    if (st.dev !== rootDev) continue;
    entries += 1;
    if (options.pace && entries % PACE_BATCH === 0) await options.pace(entries);
    const key = String(st.ino);
    if (!seen.has(key)) {
      seen.add(key);
      usedBytes += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      try {
        for (const name of await readdir(path)) pending.push(join(path, name));
      } catch {
        // removed while walking
      }
    }
  }
  return { usedBytes, inodesUsed: seen.size, complete: pending.length === 0 };
}

export interface WritableLayerMeterOptions {
  /** The upper dirs to keep measured (every container's, whatever its state). */
  upperDirs: () => Iterable<string>;
  /** A layer is measured again once its last measurement is this old. */
  refreshMs?: number;
  /** Entries visited per second at most, over all layers. */
  entriesPerSecond?: number;
  /** How often the meter looks for a layer that is due. */
  tickMs?: number;
}

export class WritableLayerMeter {
  private readonly latest = new Map<string, LayerMeasurement>();
  private readonly refreshMs: number;
  private readonly entriesPerSecond: number;
  private readonly tickMs: number;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  /** Set by stop(): a walk in progress ends at its next layer. */
  private closing = false;

  constructor(private readonly options: WritableLayerMeterOptions) {
    this.refreshMs = options.refreshMs ?? 10_000;
    this.entriesPerSecond = options.entriesPerSecond ?? 20_000;
    this.tickMs = options.tickMs ?? 1000;
  }

  /** The latest measurement of `upperDir`; undefined until the meter has walked it once. */
  usage(upperDir: string): LayerMeasurement | undefined {
    return upperDir ? this.latest.get(upperDir) : undefined;
  }

  /** Sum over every layer measured, with the oldest measurement's time (what the sum is at least as old as). */
  total(): LayerUsage & { oldestTimestampNs: bigint | undefined } {
    let usedBytes = 0;
    let inodesUsed = 0;
    let oldestTimestampNs: bigint | undefined;
    for (const m of this.latest.values()) {
      usedBytes += m.usedBytes;
      inodesUsed += m.inodesUsed;
      if (oldestTimestampNs === undefined || m.timestampNs < oldestTimestampNs) oldestTimestampNs = m.timestampNs;
    }
    return { usedBytes, inodesUsed, oldestTimestampNs };
  }

  /** firstWalkMs: when the first look for due layers happens (a restart finds every layer due at once). */
  start(firstWalkMs = 0): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.closing = false;
    this.schedule(firstWalkMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Measures every layer that is due now (never measured, or older than the
   * refresh period), one after the other; forgets layers no longer listed.
   */
  async refresh(): Promise<void> {
    while (this.running) await this.running;
    const run = this.measureDue();
    this.running = run;
    try {
      await run;
    } finally {
      this.running = undefined;
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh().then(
        () => this.schedule(this.tickMs),
        () => this.schedule(this.tickMs),
      );
    }, delayMs);
    this.timer.unref();
  }

  private async measureDue(): Promise<void> {
    const wanted = new Set([...this.options.upperDirs()].filter(Boolean));
    for (const dir of this.latest.keys()) if (!wanted.has(dir)) this.latest.delete(dir);
    const now = unixNanos();
    const due = [...wanted]
      .filter((dir) => {
        const m = this.latest.get(dir);
        return !m || now - m.timestampNs >= BigInt(this.refreshMs) * 1_000_000n;
      })
      // Never measured first, then the oldest.
      .sort((a, b) => Number((this.latest.get(a)?.timestampNs ?? 0n) - (this.latest.get(b)?.timestampNs ?? 0n)));
    if (due.length === 0) return;
    // Only the mount points inside the layers due: the walk must not enter them.
    const mountPoints = await readFile('/proc/self/mountinfo', 'utf8').then(
      (text) => mountPointsWithin(text, due),
      () => new Set<string>(),
    );
    const batchMs = (PACE_BATCH * 1000) / this.entriesPerSecond;
    let batchStarted = performance.now();
    const pace = async (): Promise<void> => {
      const wait = batchMs - (performance.now() - batchStarted);
      if (wait > 0) await sleep(wait, undefined, { ref: false });
      batchStarted = performance.now();
    };
    for (const dir of due) {
      if (this.closing) return;
      const usage = await measureDirectory(dir, { mountPoints, pace });
      // Gone meanwhile (container removed): nothing to report.
      if (!usage) {
        this.latest.delete(dir);
        continue;
      }
      if (!wanted.has(dir)) continue;
      this.latest.set(dir, { usedBytes: usage.usedBytes, inodesUsed: usage.inodesUsed, complete: usage.complete, timestampNs: unixNanos() });
    }
  }
}
