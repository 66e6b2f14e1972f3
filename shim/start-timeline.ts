// berthd's start, phase by phase: how long each step took and when it ended,
// in ms since the process began (performance.now()'s origin), so the time
// before the first log line (Node's own start and module loading) shows too.
// Each phase is logged at debug as it ends; the daemon puts the whole in its
// "serving" line.
import { performance } from 'node:perf_hooks';
import type { RuntimeLog } from '../runtime/common/log';

const round = (ms: number): number => Math.round(ms * 10) / 10;

export class StartTimeline {
  private last: number;
  /** Each phase's duration (ms), in the order they ended. */
  readonly phases: Record<string, number> = {};

  constructor(private readonly log: RuntimeLog) {
    this.last = performance.now();
    this.phases.process = round(this.last);
  }

  /** Ends the phase named `phase` now. */
  mark(phase: string): void {
    const now = performance.now();
    this.phases[phase] = round(now - this.last);
    this.last = now;
    this.log.debug({ phase, ms: this.phases[phase], at: round(now) }, 'start phase');
  }

  /** ms since the process began. */
  elapsed(): number {
    return round(performance.now());
  }

  /** CPU time the process used so far (user + system, ms): steadier than elapsed time on a busy machine. */
  cpuMs(): number {
    const { user, system } = process.cpuUsage();
    return round((user + system) / 1000);
  }
}
