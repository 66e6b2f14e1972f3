// One lock per id: calls on the same pod run one after another, calls on
// different pods never wait for each other.
export class IdLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  async with<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(id) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(id) === tail) this.tails.delete(id);
    }
  }
}
