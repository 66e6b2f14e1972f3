// The calls' deadlines on one timer (shim/grpc-wire/deadlines.ts): what
// expires and in which order, never how long it took.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Deadlines, type DeadlineEntry } from '../../shim/grpc-wire/deadlines';

function entry(name: string, expired: string[]): DeadlineEntry & { done: Promise<void> } {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  return {
    deadlineAt: 0,
    done,
    expire() {
      expired.push(name);
      resolve();
    },
  };
}

describe('Deadlines', () => {
  // The deadline timer does not hold the process open (a server's sockets do); this stands in for them.
  let keepAlive: NodeJS.Timeout;
  before(() => (keepAlive = setInterval(() => undefined, 1000)));
  after(() => clearInterval(keepAlive));

  test('a later call with an earlier deadline expires first; the timer is re-armed for the ones left', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const late = entry('late', expired);
    const early = entry('early', expired);
    deadlines.add(late, 60);
    deadlines.add(early, 5);
    await late.done;
    assert.deepEqual(expired, ['early', 'late']);
    assert.equal(deadlines.size, 0);
  });

  test('a call deleted before its deadline never expires, and the ones beside it still do', async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const ended = entry('ended', expired);
    const kept = entry('kept', expired);
    deadlines.add(ended, 1);
    deadlines.add(kept, 20);
    deadlines.delete(ended);
    await kept.done;
    assert.deepEqual(expired, ['kept']);
    assert.equal(deadlines.size, 0);
  });
});
