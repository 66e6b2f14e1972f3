// Per-image caps over all of an image's layers (image.max_image_entries,
// image.max_image_unpacked_bytes), set small here: a pull over either fails with
// RESOURCE_EXHAUSTED naming the key, and leaves nothing in layers/ or content/tmp.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { buildImage, buildLayer, pushBusyboxImage, pushImage, type BuiltLayer } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import type { TarEntry } from '../support/tar-writer';

const RESOURCE_EXHAUSTED = 8;
const MAX_ENTRIES = 300;
const MAX_BYTES = 12_000_000;

function manyFiles(prefix: string, count: number): BuiltLayer {
  const entries: TarEntry[] = [{ path: `${prefix}/`, type: 'dir' }];
  for (let i = 1; i < count; i++) entries.push({ path: `${prefix}/f${i}`, type: 'file', content: `${prefix} ${i}` });
  return buildLayer(entries);
}

describe('per-image unpack caps', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;

  const layerDirs = () => readdirSync(join(berthd.root, 'layers')).sort();
  const tempLeftovers = () => readdirSync(join(berthd.root, 'content', 'tmp'));
  const overCap = (key: string) => (err: unknown) => grpcCode(err) === RESOURCE_EXHAUSTED && (err as Error).message.includes(key);

  before(async () => {
    registry = await startRegistry();
    berthd = await startBerthd({ extraToml: ['[image]', `max_image_entries = ${MAX_ENTRIES}`, `max_image_unpacked_bytes = ${MAX_BYTES}`].join('\n') });
  });
  after(async () => {
    await berthd?.cleanup();
    await registry?.stop();
  });

  test('an image under the caps pulls (the layer workers run within their resource limits)', async () => {
    const pushed = await pushBusyboxImage(registry, 'caps/busybox:v1');
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    assert.equal(pull.image_ref, pushed.imageId);
  });

  test('an image whose layers together exceed the entry cap fails and leaves no layer behind', async () => {
    const before = layerDirs();
    // Each layer alone is under the cap; together they are not.
    const pushed = await pushImage(registry, 'caps/entries:v1', buildImage({ layers: [manyFiles('a', 200), manyFiles('b', 200)] }));
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), overCap('image.max_image_entries'));
    assert.deepEqual(layerDirs(), before);
    assert.deepEqual(tempLeftovers(), []);
    assert.equal((await berthd.client.call('ImageStatus', { image: { image: pushed.reference } })).image, null);
  });

  test('an image whose layers together exceed the byte cap fails and leaves no layer behind', async () => {
    const before = layerDirs();
    const layer = (name: string) => buildLayer([{ path: name, type: 'file', content: randomBytes(7_000_000) }], 'none');
    const pushed = await pushImage(registry, 'caps/bytes:v1', buildImage({ layers: [layer('one'), layer('two')] }));
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), overCap('image.max_image_unpacked_bytes'));
    assert.deepEqual(layerDirs(), before);
    assert.deepEqual(tempLeftovers(), []);
  });

  test('layers already on disk count against the image; the image that owns them keeps them', async () => {
    const shared = manyFiles('shared', 200);
    const first = await pushImage(registry, 'caps/first:v1', buildImage({ layers: [shared] }));
    await berthd.client.call('PullImage', { image: { image: first.reference } });
    const withFirst = layerDirs();
    const second = await pushImage(registry, 'caps/second:v1', buildImage({ layers: [shared, manyFiles('more', 150)] }));
    await assert.rejects(berthd.client.call('PullImage', { image: { image: second.reference } }), overCap('image.max_image_entries'));
    assert.deepEqual(layerDirs(), withFirst, 'the new layer is gone, the shared one stays');
    assert.equal((await berthd.client.call('ImageStatus', { image: { image: first.reference } })).image?.id, first.imageId);
  });
});
