// The deadlines of a server's calls on one timer. A timer per call
// (setTimeout when a call with grpc-timeout arrives, clearTimeout when it
// ends) put two trips through Node's timer lists on every call, and most
// calls end long before their deadline (the kubelet's are minutes). Here a
// call's deadline is an entry in a set; the one timer stands at the earliest
// deadline it was armed for, and is moved only when a call comes with an
// earlier one. When it fires, the calls past their deadline expire and it is
// armed again for the earliest left.
import { performance } from 'node:perf_hooks';

/** A call with a deadline: `expire` runs once, when the deadline passed before the call left the set. */
export interface DeadlineEntry {
  deadlineAt: number;
  expire(): void;
}

export class Deadlines {
  private readonly pending = new Set<DeadlineEntry>();
  private timer?: NodeJS.Timeout;
  /** When the timer fires (performance.now() milliseconds), Infinity when it is not armed. */
  private timerAt = Infinity;

  /** `entry` expires `ms` from now unless it is deleted first. */
  add(entry: DeadlineEntry, ms: number): void {
    const at = performance.now() + ms;
    entry.deadlineAt = at;
    this.pending.add(entry);
    if (at < this.timerAt) this.arm(at);
  }

  delete(entry: DeadlineEntry): void {
    this.pending.delete(entry);
  }

  /** Calls waiting on a deadline (for tests). */
  get size(): number {
    return this.pending.size;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // +1: a timer may fire a fraction of a millisecond early against performance.now(); fire() would then only re-arm.
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(at - performance.now())) + 1);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    const due: DeadlineEntry[] = [];
    let next = Infinity;
    for (const entry of this.pending) {
      if (entry.deadlineAt <= now) due.push(entry);
      else if (entry.deadlineAt < next) next = entry.deadlineAt;
    }
    for (const entry of due) this.pending.delete(entry);
    if (next !== Infinity) this.arm(next);
    for (const entry of due) entry.expire();
  }
}
