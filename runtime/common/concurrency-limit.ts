// At most `limit` tasks at once; the rest wait in arrival order. Keeps work
// that fans out over every pod or container (stats reads, downloads) from
// flooding libuv's four-thread pool, where every other file operation of the
// daemon would queue behind it.
export class ConcurrencyLimit {
  private readonly waiting: Array<() => void> = [];
  private active = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${limit}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
