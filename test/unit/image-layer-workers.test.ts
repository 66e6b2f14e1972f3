// The layer worker pool's lifetime: idle workers (V8 isolates) are retired, and
// the memory their threads freed is handed back to the kernel once none runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNative } from '../../native';
import { LayerWorkerPool } from '../../runtime/image/layer-workers';

async function until(what: string, check: () => boolean, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('idle layer workers are retired, then free memory is released once, after the last of them ended', async () => {
  const releases: number[] = [];
  const pool = new LayerWorkerPool(2, {
    idleMs: 50,
    releaseFreeMemory: async () => {
      releases.push(pool.size);
      return true;
    },
  });
  try {
    pool.warm(2);
    assert.equal(pool.size, 2);
    await until('the release of free memory', () => releases.length > 0);
    assert.deepEqual(releases, [0], 'released once, with no worker left');
    // Started again on the next pull, and retired again.
    pool.warm(1);
    assert.equal(pool.size, 1);
    await until('the second release', () => releases.length > 1);
    assert.deepEqual(releases, [0, 0]);
  } finally {
    await pool.close();
  }
});

test("the addon's release of free memory resolves with whether memory went back to the kernel", async () => {
  const released = await loadNative().releaseFreeMemory();
  assert.equal(typeof released, 'boolean');
});
