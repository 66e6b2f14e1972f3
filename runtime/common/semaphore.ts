// A counting semaphore: at most `limit` callers run at once, the rest wait in
// arrival order (concurrent layer downloads, bounded by config).

export class Semaphore {
  private readonly waiting: (() => void)[] = [];
  private active = 0;

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`a semaphore needs a limit of at least 1 (got ${limit})`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      // A waiter inherits this slot; only when nobody waits is it given back.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  /** Callers running now (for tests and diagnostics). */
  get running(): number {
    return this.active;
  }
}
