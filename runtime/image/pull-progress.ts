// What a long pull has done so far, logged at a bounded rate: bytes received of
// the bytes to fetch, and layers done, at most one line per interval per pull
// (a pull shorter than the interval logs none). Driven by the bytes arriving,
// so a stalled pull stays quiet: its progress timeout speaks for it.
import type { RuntimeLog } from '../common/log';

export const PULL_PROGRESS_INTERVAL_MS = 10_000;

export class PullProgress {
  private bytesDone = 0;
  private layersDone = 0;
  private lastLogAt: number;

  constructor(
    private readonly image: string,
    /** Compressed bytes of the layers this pull fetches (layers already here are not counted). */
    private readonly bytesTotal: number,
    private readonly layersTotal: number,
    private readonly log: RuntimeLog,
    private readonly intervalMs = PULL_PROGRESS_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.lastLogAt = now();
  }

  bytesReceived(n: number): void {
    this.bytesDone += n;
    this.maybeLog();
  }

  layerDone(): void {
    this.layersDone++;
    this.maybeLog();
  }

  private maybeLog(): void {
    const at = this.now();
    if (at - this.lastLogAt < this.intervalMs || this.layersDone === this.layersTotal) return;
    this.lastLogAt = at;
    const percent = this.bytesTotal > 0 ? Math.min(100, Math.floor((this.bytesDone / this.bytesTotal) * 100)) : 0;
    this.log.info(
      { image: this.image, bytesDone: this.bytesDone, bytesTotal: this.bytesTotal, layersDone: this.layersDone, layersTotal: this.layersTotal },
      `pulling ${this.image}: ${percent}% of ${(this.bytesTotal / 1e6).toFixed(1)} MB, ${this.layersDone}/${this.layersTotal} layers`,
    );
  }
}
