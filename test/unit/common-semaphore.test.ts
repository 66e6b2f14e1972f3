// The counting semaphore of runtime/common (bounds concurrent layer downloads).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Semaphore } from '../../runtime/common/semaphore';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

describe('semaphore', () => {
  test('at most `limit` callers run at once; the rest start in arrival order as slots free', async () => {
    const semaphore = new Semaphore(2);
    const gates = [gate(), gate(), gate(), gate()];
    const started: number[] = [];
    let peak = 0;
    const runs = gates.map((g, i) =>
      semaphore.run(async () => {
        started.push(i);
        peak = Math.max(peak, semaphore.running);
        await g.opened;
      }),
    );
    await tick();
    assert.deepEqual(started, [0, 1]);
    gates[1].open();
    await tick();
    assert.deepEqual(started, [0, 1, 2]);
    gates[0].open();
    await tick();
    assert.deepEqual(started, [0, 1, 2, 3]);
    gates[2].open();
    gates[3].open();
    await Promise.all(runs);
    assert.equal(peak, 2);
    assert.equal(semaphore.running, 0);
  });

  test('a freed slot goes to a waiter, not to a caller arriving in the same turn', async () => {
    const semaphore = new Semaphore(1);
    const first = gate();
    let concurrent = 0;
    let peak = 0;
    const work = async (wait?: Promise<void>): Promise<void> => {
      concurrent++;
      peak = Math.max(peak, concurrent);
      await wait;
      await tick();
      concurrent--;
    };
    const a = semaphore.run(() => work(first.opened));
    const b = semaphore.run(() => work());
    await tick();
    first.open();
    // Arrives while a's slot is being handed to b.
    const c = semaphore.run(() => work());
    await Promise.all([a, b, c]);
    assert.equal(peak, 1);
  });

  test('a caller that throws gives its slot back and its error to its caller', async () => {
    const semaphore = new Semaphore(1);
    await assert.rejects(semaphore.run(async () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await semaphore.run(async () => 'next'), 'next');
    assert.equal(semaphore.running, 0);
  });

  test('a limit below one is refused', () => {
    assert.throws(() => new Semaphore(0), RangeError);
  });
});
