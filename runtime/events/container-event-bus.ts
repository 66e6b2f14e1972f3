// Fan-out of container lifecycle events to any number of subscribers
// (GetContainerEvents streams). Each subscriber has its own bounded queue: the
// publisher only appends, so a stalled reader never delays a lifecycle call or
// another reader. A reader that falls a whole queue behind is cut off, and told
// so, rather than silently skipping events: the kubelet re-subscribes and relists.
import type { ContainerEventPublisher, ContainerLifecycleEvent } from './event-types';

export const DEFAULT_SUBSCRIBER_QUEUE_LIMIT = 1000;

export type SubscriptionEnd = 'open' | 'closed' | 'overflowed' | 'bus-closed';

export interface ContainerEventSubscription extends AsyncIterable<ContainerLifecycleEvent> {
  readonly id: number;
  /** Resolves with the next event, or undefined once the subscription has ended. */
  next(): Promise<ContainerLifecycleEvent | undefined>;
  /** Why it ended ("open" while it has not). */
  readonly end: SubscriptionEnd;
  /** Resolves when the subscription ends, for racing against a blocked write. */
  readonly ended: Promise<SubscriptionEnd>;
  /** Events waiting to be read. */
  readonly pending: number;
  close(): void;
}

export interface ContainerEventBusOptions {
  queueLimit?: number;
  /** Told when a subscriber is cut off for falling behind. */
  onOverflow?: (subscriptionId: number, queued: number) => void;
}

class Subscription implements ContainerEventSubscription {
  end: SubscriptionEnd = 'open';
  readonly ended: Promise<SubscriptionEnd>;
  private readonly queue: ContainerLifecycleEvent[] = [];
  private waiter: ((event: ContainerLifecycleEvent | undefined) => void) | undefined;
  private resolveEnded!: (end: SubscriptionEnd) => void;

  constructor(
    readonly id: number,
    private readonly limit: number,
    private readonly detach: (s: Subscription) => void,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Returns false when the subscriber had to be cut off. */
  offer(event: ContainerLifecycleEvent): boolean {
    if (this.end !== 'open') return true;
    if (this.waiter) {
      const wake = this.waiter;
      this.waiter = undefined;
      wake(event);
      return true;
    }
    if (this.queue.length >= this.limit) {
      this.finish('overflowed');
      return false;
    }
    this.queue.push(event);
    return true;
  }

  next(): Promise<ContainerLifecycleEvent | undefined> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.end !== 'open') return Promise.resolve(undefined);
    if (this.waiter) return Promise.reject(new Error('only one next() may wait at a time'));
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  close(): void {
    this.finish('closed');
  }

  finish(end: Exclude<SubscriptionEnd, 'open'>): void {
    if (this.end !== 'open') return;
    this.end = end;
    // What was queued is dropped: an overflowed reader must not see a gap it cannot detect.
    this.queue.length = 0;
    this.detach(this);
    const wake = this.waiter;
    this.waiter = undefined;
    wake?.(undefined);
    this.resolveEnded(end);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ContainerLifecycleEvent> {
    for (;;) {
      const event = await this.next();
      if (!event) return;
      yield event;
    }
  }
}

export class ContainerEventBus implements ContainerEventPublisher {
  private readonly subscribers = new Set<Subscription>();
  private readonly queueLimit: number;
  private nextId = 0;
  private closed = false;
  published = 0;
  overflowed = 0;

  constructor(private readonly options: ContainerEventBusOptions = {}) {
    this.queueLimit = Math.max(1, options.queueLimit ?? DEFAULT_SUBSCRIBER_QUEUE_LIMIT);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  publish(event: ContainerLifecycleEvent): void {
    if (this.closed) return;
    this.published += 1;
    for (const subscriber of [...this.subscribers]) {
      if (!subscriber.offer(event)) {
        this.overflowed += 1;
        try {
          this.options.onOverflow?.(subscriber.id, this.queueLimit);
        } catch {
          // a failing observer must not reach the publisher
        }
      }
    }
  }

  subscribe(): ContainerEventSubscription {
    const subscription = new Subscription(++this.nextId, this.queueLimit, (s) => this.subscribers.delete(s));
    if (this.closed) subscription.finish('bus-closed');
    else this.subscribers.add(subscription);
    return subscription;
  }

  /** Ends every subscription (berthd stopping); later publishes are ignored. */
  close(): void {
    this.closed = true;
    for (const subscriber of [...this.subscribers]) subscriber.finish('bus-closed');
  }
}
