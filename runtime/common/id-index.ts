// Lookup by full id or by a unique prefix of it: users type short ids into
// crictl, and containerd and CRI-O both accept them. One implementation for
// pods and containers, so both answer an ambiguous or unknown id alike.
import { invalidArgument, notFound } from '../errors';

export interface IdIndexOptions<T> {
  /** What the ids name, for messages ("pod sandbox", "container"). */
  noun: string;
  /** Objects still being made or already being removed are not found by id. */
  visible: (item: T) => boolean;
}

export class IdIndex<T> {
  private readonly items = new Map<string, T>();

  constructor(private readonly options: IdIndexOptions<T>) {}

  set(id: string, item: T): void {
    this.items.set(id, item);
  }

  delete(id: string): void {
    this.items.delete(id);
  }

  /** Exactly this id, visible or not (internal callers that already hold a full id). */
  exact(id: string): T | undefined {
    return this.items.get(id);
  }

  /** Every object, visible or not, in insertion order. */
  all(): IterableIterator<T> {
    return this.items.values();
  }

  visible(): T[] {
    const out: T[] = [];
    for (const item of this.items.values()) if (this.options.visible(item)) out.push(item);
    return out;
  }

  get size(): number {
    return this.items.size;
  }

  /** The visible object with this id or unique id prefix; undefined when none, or when the prefix is ambiguous. */
  find(idOrPrefix: string): T | undefined {
    try {
      return this.lookup(idOrPrefix);
    } catch {
      return undefined;
    }
  }

  /** The visible object with this id or unique id prefix; NOT_FOUND when none, INVALID_ARGUMENT when ambiguous. */
  require(idOrPrefix: string): T {
    const found = this.lookup(idOrPrefix);
    if (found === undefined) throw notFound(`${this.options.noun} "${idOrPrefix}" not found`);
    return found;
  }

  private lookup(idOrPrefix: string): T | undefined {
    if (!idOrPrefix) return undefined;
    const exact = this.items.get(idOrPrefix);
    if (exact !== undefined) return this.options.visible(exact) ? exact : undefined;
    let found: T | undefined;
    let count = 0;
    for (const [id, item] of this.items) {
      if (!id.startsWith(idOrPrefix) || !this.options.visible(item)) continue;
      found = item;
      count++;
    }
    if (count > 1) throw invalidArgument(`${this.options.noun} id prefix "${idOrPrefix}" is ambiguous (${count} match)`);
    return found;
  }
}
