// One lock per id (a pod, a container, a reserved name): calls on the same id
// run one after another, calls on different ids never wait for each other.
// A holder may also take an id shared: several shared holders run together
// (containers being created in one pod), an exclusive one (the pod's removal)
// waits until they are done and keeps new ones out until it is.

interface LockState {
  /** Settles when every holder admitted so far (shared or exclusive) has let go. */
  tail: Promise<void>;
  /** Settles when the last exclusive holder admitted so far has let go. */
  lastExclusive: Promise<void>;
  holders: number;
}

export class IdLocks {
  private readonly states = new Map<string, LockState>();

  /** Runs `fn` alone on `id`: after every earlier holder, before every later one. */
  with<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const state = this.stateOf(id);
    const previous = state.tail;
    const { promise: released, resolve: release } = promiseWithResolve();
    state.tail = released;
    state.lastExclusive = released;
    return this.run(id, state, previous, release, fn);
  }

  /** Runs `fn` beside other shared holders of `id`, after every earlier exclusive one. */
  shared<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const state = this.stateOf(id);
    const previous = state.lastExclusive;
    const { promise: released, resolve: release } = promiseWithResolve();
    const earlierTail = state.tail;
    state.tail = Promise.all([earlierTail, released]).then(() => undefined);
    return this.run(id, state, previous, release, fn);
  }

  /** Whether anyone holds or waits for `id` (for tests and diagnostics). */
  busy(id: string): boolean {
    return this.states.has(id);
  }

  private stateOf(id: string): LockState {
    let state = this.states.get(id);
    if (!state) {
      state = { tail: Promise.resolve(), lastExclusive: Promise.resolve(), holders: 0 };
      this.states.set(id, state);
    }
    state.holders++;
    return state;
  }

  private async run<T>(id: string, state: LockState, previous: Promise<void>, release: () => void, fn: () => Promise<T>): Promise<T> {
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (--state.holders === 0) this.states.delete(id);
    }
  }
}

function promiseWithResolve(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
