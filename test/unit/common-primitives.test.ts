// The shared primitives of runtime/common: per-id locks (exclusive and shared),
// id/prefix lookup, call timing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IdLocks } from '../../runtime/common/id-locks';
import { IdIndex } from '../../runtime/common/id-index';
import { timeCall } from '../../runtime/common/call-timing';
import { isBerthError } from '../../runtime/errors';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('per-id locks, exclusive holders', () => {
  test('calls on one id run one after another; other ids do not wait', async () => {
    const locks = new IdLocks();
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = locks.with('a', async () => {
      order.push('a1 start');
      await gate;
      order.push('a1 end');
    });
    const second = locks.with('a', async () => {
      order.push('a2');
    });
    await locks.with('b', async () => {
      order.push('b');
    });
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['a1 start', 'b', 'a1 end', 'a2']);
  });

  test('a failed call does not block the next one', async () => {
    const locks = new IdLocks();
    await assert.rejects(locks.with('a', async () => Promise.reject(new Error('boom'))));
    assert.equal(await locks.with('a', async () => 7), 7);
  });
});

describe('per-id locks, shared holders', () => {
  test('shared holders run together; an exclusive one waits for them and keeps later shared ones out', async () => {
    const locks = new IdLocks();
    const order: string[] = [];
    let releaseShared!: () => void;
    const sharedGate = new Promise<void>((r) => (releaseShared = r));
    const s1 = locks.shared('pod', async () => {
      order.push('s1 start');
      await sharedGate;
      order.push('s1 end');
    });
    const s2 = locks.shared('pod', async () => {
      order.push('s2');
    });
    const x = locks.with('pod', async () => {
      order.push('x');
    });
    const s3 = locks.shared('pod', async () => {
      order.push('s3');
    });
    await tick();
    await tick();
    assert.deepEqual(order, ['s1 start', 's2']);
    releaseShared();
    await Promise.all([s1, s2, x, s3]);
    assert.deepEqual(order, ['s1 start', 's2', 's1 end', 'x', 's3']);
    assert.equal(locks.busy('pod'), false);
  });

  test('a failed shared holder releases its hold', async () => {
    const locks = new IdLocks();
    await assert.rejects(locks.shared('a', async () => Promise.reject(new Error('boom'))));
    assert.equal(await locks.with('a', async () => 3), 3);
  });
});

describe('id index', () => {
  const index = new IdIndex<{ id: string; hidden?: boolean }>({ noun: 'container', visible: (c) => !c.hidden });
  for (const id of ['abc123', 'abd456', 'ffff01']) index.set(id, { id });
  index.set('fffe02', { id: 'fffe02', hidden: true });

  test('finds by full id and by unique prefix', () => {
    assert.equal(index.require('abc123').id, 'abc123');
    assert.equal(index.require('abd').id, 'abd456');
    assert.equal(index.require('fff').id, 'ffff01', 'a hidden object does not make a prefix ambiguous');
  });

  test('an unknown id is NOT_FOUND, an ambiguous prefix INVALID_ARGUMENT, a hidden one is not found', () => {
    assert.throws(() => index.require('zz'), (e) => isBerthError(e, 'NotFound') && /container "zz" not found/.test(e.message));
    assert.throws(() => index.require('ab'), (e) => isBerthError(e, 'InvalidArgument') && /ambiguous/.test(e.message));
    assert.throws(() => index.require('fffe02'), (e) => isBerthError(e, 'NotFound'));
    assert.equal(index.find('ab'), undefined);
    assert.equal(index.find(''), undefined);
  });
});

describe('call timing', () => {
  test('reports ok and error outcomes with a duration', async () => {
    const seen: string[] = [];
    await timeCall(async () => 1, (s, o) => seen.push(`${o}:${s >= 0}`));
    await assert.rejects(timeCall(async () => Promise.reject(new Error('x')), (s, o) => seen.push(`${o}:${s >= 0}`)));
    assert.deepEqual(seen, ['ok:true', 'error:true']);
  });
});
