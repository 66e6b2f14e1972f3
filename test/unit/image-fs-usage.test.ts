// ImageFsInfo's accounting as pure logic: counts run in the background and a
// call never waits for one once a figure exists (stand-ins for the SQLite
// rows and the content store, whose counts this test releases by hand).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContentBlobs } from '../../runtime/image/content-blobs';
import { ImageFsAccounting } from '../../runtime/image/image-fs-usage';
import type { ImageRows } from '../../runtime/image/image-rows';

function controlledBlobs(): { blobs: ContentBlobs; counts: number; release(bytes: number): void } {
  const pending: Array<(v: { bytes: number; blobs: number }) => void> = [];
  const state = {
    counts: 0,
    blobs: {
      usage: () => {
        state.counts++;
        return new Promise<{ bytes: number; blobs: number }>((resolve) => pending.push(resolve));
      },
    } as unknown as ContentBlobs,
    release(bytes: number) {
      pending.shift()?.({ bytes, blobs: 1 });
    },
  };
  return state;
}

const rows = { layerTotals: () => ({ layers: 2, unpackedBytes: 1000, entries: 10 }) } as unknown as ImageRows;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('ImageFsInfo waits for a count only before the first one; afterwards it answers the latest figure with its time while the next count runs', async () => {
  const content = controlledBlobs();
  const accounting = new ImageFsAccounting({ root: '/var/lib/berth', rows, blobs: content.blobs, refreshMs: 60_000 });
  accounting.setWritableLayers({ total: () => ({ usedBytes: 4096, inodesUsed: 3, oldestTimestampNs: 42n }) });

  const first = accounting.usage();
  await tick();
  content.release(500);
  const counted = await first;
  assert.equal(counted.images.usedBytes, 1500);
  assert.equal(counted.images.inodesUsed, 10 + 2 * 2 + 1);
  assert.deepEqual(counted.containers, { mountpoint: '/var/lib/berth', usedBytes: 4096, inodesUsed: 3, timestampNs: '42' });

  // A pull landed: the count starts in the background and stays unfinished here.
  accounting.invalidate();
  await tick();
  assert.equal(content.counts, 2);
  const meanwhile = await accounting.usage();
  assert.equal(meanwhile.images.usedBytes, 1500, 'the latest figure, not a wait for the count in flight');
  assert.equal(meanwhile.images.timestampNs, counted.images.timestampNs);
  assert.equal(content.counts, 2, 'no second count while one runs');

  content.release(9000);
  await tick();
  assert.equal((await accounting.usage()).images.usedBytes, 10_000);
  assert.equal(content.counts, 2, 'a fresh figure is not counted again');
});
