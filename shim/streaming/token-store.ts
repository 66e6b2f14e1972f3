// Single-use, expiring tokens naming a pending streaming request, as the CRI
// streaming servers of containerd and CRI-O hand out: the URL returned by
// Exec/Attach/PortForward is only good once and only for a short while.
import { randomBytes } from 'node:crypto';

export class TokenStoreFull extends Error {}

export class TokenStore<T> {
  private readonly entries = new Map<string, { value: T; expiresAt: number }>();

  constructor(
    private ttlMs: number,
    private readonly maxEntries = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Tokens handed out from now on live this long; those out already keep their expiry. */
  setTtl(ttlMs: number): void {
    this.ttlMs = ttlMs;
  }

  /** Stores value under a fresh unguessable token. */
  insert(value: T): string {
    this.sweep();
    if (this.entries.size >= this.maxEntries) throw new TokenStoreFull(`too many pending streaming requests (${this.maxEntries})`);
    let token: string;
    do token = randomBytes(12).toString('base64url');
    while (this.entries.has(token));
    this.entries.set(token, { value, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** Takes the value out: a token works once, and never after it expired. */
  consume(token: string): T | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    if (entry.expiresAt <= this.now()) return undefined;
    return entry.value;
  }

  get size(): number {
    this.sweep();
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(token);
  }
}
