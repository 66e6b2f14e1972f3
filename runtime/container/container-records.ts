// The containers berth knows: in memory (looked up by id or unique prefix) and
// in SQLite (every change saved at once), and the lifecycle events their
// changes publish. A container being created is in the index (its name is
// taken, recovery can undo it) but found by no lookup until it exists.
import { IdIndex } from '../common/id-index';
import { nowUnixNanos } from '../common/clock';
import type { RuntimeLog } from '../common/log';
import { describeError, isBerthError } from '../errors';
import type { ContainerEventPublisher, ContainerEventType } from '../events/event-types';
import type { ContainerRecord, ContainerStore } from './container-store';
import { checkContainerId } from './container-request-validation';

export class ContainerRecords {
  private readonly index = new IdIndex<ContainerRecord>({ noun: 'container', visible: (r) => r.phase !== 'creating' });

  constructor(
    private readonly store: ContainerStore,
    private readonly events: ContainerEventPublisher | undefined,
    private readonly log: RuntimeLog,
  ) {
    for (const record of store.all()) this.index.set(record.id, record);
  }

  /** By id or unique prefix: INVALID_ARGUMENT when empty or ambiguous, NOT_FOUND when none. */
  require(idOrPrefix: string): ContainerRecord {
    checkContainerId(idOrPrefix);
    return this.index.require(idOrPrefix);
  }

  /** As require, but undefined when there is none (stop and remove of a gone container succeed). */
  find(idOrPrefix: string): ContainerRecord | undefined {
    try {
      return this.require(idOrPrefix);
    } catch (err) {
      if (isBerthError(err, 'NotFound')) return undefined;
      throw err;
    }
  }

  /** Exactly this id, in any phase (callers already holding a full id, under its lock). */
  exact(id: string): ContainerRecord | undefined {
    return this.index.exact(id);
  }

  /** Every record, in any phase. */
  all(): ContainerRecord[] {
    return [...this.index.all()];
  }

  ofPod(podSandboxId: string): ContainerRecord[] {
    return this.all().filter((r) => r.podSandboxId === podSandboxId);
  }

  /** A new record, saved before the first host resource is made for it. */
  add(record: ContainerRecord): void {
    this.index.set(record.id, record);
    this.store.save(record);
  }

  save(record: ContainerRecord): void {
    this.store.save(record);
  }

  /** The record of a container whose every host trace is gone. */
  forget(id: string): void {
    this.store.delete(id);
    this.index.delete(id);
  }

  publish(type: ContainerEventType, record: ContainerRecord): void {
    try {
      this.events?.publish({ type, containerId: record.id, podSandboxId: record.podSandboxId, createdAt: nowUnixNanos() });
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'event publish failed');
    }
  }
}
