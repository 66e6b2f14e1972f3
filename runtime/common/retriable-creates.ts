// Create calls (RunPodSandbox, CreateContainer) that a client may retry
// after its deadline passed. A name is taken once a created object was
// delivered, that is, its id was handed to a caller still waiting for it; a
// retry of the same name then is ALREADY_EXISTS (the model's own check). But
// a call whose answer reached nobody, because it was in flight or its caller
// gave up, must not leave the name blocked by an object its caller never
// learned of: a retry joins the call in flight, or gets what it made (the
// idea of CRI-O's resource store). Kept in memory only: after a restart an
// undelivered object is an ordinary one, listed for the kubelet to collect.
export class RetriableCreates {
  /** Create calls in flight, by name. */
  private readonly inflight = new Map<string, Promise<string>>();
  /** What a finished call made under a name, while no caller has received it. */
  private readonly undelivered = new Map<string, string>();

  /**
   * The id for `name`: joins a call for it in flight, hands over what an
   * earlier call made and delivered to nobody (while `exists(id)`), or runs
   * `make`. `delivered` settles true once this caller got its answer.
   */
  async run(name: string, make: () => Promise<string>, exists: (id: string) => boolean, delivered: Promise<boolean>): Promise<string> {
    let started = this.inflight.get(name);
    if (!started) {
      const waiting = this.undeliveredOf(name, exists);
      started = waiting !== undefined ? Promise.resolve(waiting) : this.start(name, make);
    }
    const id = await started;
    void delivered.then((ok) => {
      if (ok && this.undelivered.get(name) === id) this.undelivered.delete(name);
    });
    return id;
  }

  private undeliveredOf(name: string, exists: (id: string) => boolean): string | undefined {
    const id = this.undelivered.get(name);
    if (id === undefined) return undefined;
    if (exists(id)) return id;
    this.undelivered.delete(name);
    return undefined;
  }

  private start(name: string, make: () => Promise<string>): Promise<string> {
    const making = make().then((id) => {
      this.undelivered.set(name, id);
      return id;
    });
    this.inflight.set(name, making);
    const done = (): void => {
      if (this.inflight.get(name) === making) this.inflight.delete(name);
    };
    making.then(done, done);
    return making;
  }
}
