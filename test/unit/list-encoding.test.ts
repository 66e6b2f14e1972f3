// ListEncoder: list answers made of per-item encodings kept between calls
// must decode exactly as the message encoded whole, follow each item's
// changes, and let go of items that are gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCriPackage } from '../../cri-proto';
import { KeptAnswer, ListEncoder, responseBytes, responseSerializer, type ListedItems } from '../../shim/list-encoding';

const service = loadCriPackage().runtime.v1.RuntimeService.service;
const method = {
  responseSerialize: (value: unknown): Buffer => responseBytes(value, (v) => service.ListPodSandbox.responseSerialize(v as never)),
  responseDeserialize: (bytes: Buffer): unknown => service.ListPodSandbox.responseDeserialize(bytes),
};

function pod(id: string, state: string) {
  return { id, metadata: { name: `n-${id}`, uid: `u-${id}`, namespace: 'ns', attempt: 1 }, state, created_at: '1764644000000000000', labels: { app: id }, annotations: { a: 'b' }, runtime_handler: '' };
}

type Pod = ReturnType<typeof pod>;
const serialize = responseSerializer(service, 'ListPodSandbox');
/** Counts the items it builds. */
function counting(): ListedItems<Pod, Pod> & { built: number } {
  const d = { built: 0, key: (p: Pod) => p.id, version: (p: Pod) => p.state, item: (p: Pod) => (d.built++, p) };
  return d;
}

test('a list encoded item by item decodes as the list encoded whole, and an empty list as an empty message', () => {
  const encoder = new ListEncoder('items', serialize, counting());
  const pods = [pod('a', 'SANDBOX_READY'), pod('b', 'SANDBOX_NOTREADY'), pod('c', 'SANDBOX_READY')];
  const bytes = method.responseSerialize(encoder.encode(pods, true));
  assert.deepEqual(method.responseDeserialize(bytes), method.responseDeserialize(service.ListPodSandbox.responseSerialize({ items: pods } as never)));
  assert.deepEqual(method.responseDeserialize(method.responseSerialize(encoder.encode([], true))), { items: [] });
});

test('an item is encoded again when its version changes, and only then', () => {
  const d = counting();
  const encoder = new ListEncoder('items', serialize, d);
  encoder.encode([pod('a', 'SANDBOX_READY')], true);
  encoder.encode([pod('a', 'SANDBOX_READY')], true);
  assert.equal(d.built, 1);
  const bytes = method.responseSerialize(encoder.encode([pod('a', 'SANDBOX_NOTREADY')], true));
  assert.equal(d.built, 2);
  assert.equal((method.responseDeserialize(bytes) as { items: { state: string }[] }).items[0].state, 'SANDBOX_NOTREADY');
});

test('a change of the detail part of the version alone encodes the item again', () => {
  let name = 'one';
  const d = { ...counting(), detail: () => name };
  let built = 0;
  const encoder = new ListEncoder('items', serialize, { ...d, item: (p: Pod) => (built++, { ...p, metadata: { ...p.metadata, name } }) });
  encoder.encode([pod('a', 'SANDBOX_READY')], true);
  name = 'two';
  const bytes = method.responseSerialize(encoder.encode([pod('a', 'SANDBOX_READY')], true));
  assert.equal(built, 2);
  assert.equal((method.responseDeserialize(bytes) as { items: { metadata: { name: string } }[] }).items[0].metadata.name, 'two');
});

test('an unchanged list answers the very same bytes; a change, a removal or another order answers new ones', () => {
  const encoder = new ListEncoder('items', serialize, counting());
  const bytesOf = (pods: Pod[]): Buffer => method.responseSerialize(encoder.encode(pods, true));
  const a = pod('a', 'SANDBOX_READY');
  const b = pod('b', 'SANDBOX_READY');
  const first = bytesOf([a, b]);
  assert.equal(bytesOf([a, b]), first, 'the kept answer itself');
  const swapped = bytesOf([b, a]);
  assert.notEqual(swapped, first);
  assert.deepEqual(method.responseDeserialize(swapped), method.responseDeserialize(service.ListPodSandbox.responseSerialize({ items: [b, a] } as never)));
  assert.deepEqual((method.responseDeserialize(bytesOf([b])) as { items: unknown[] }).items.length, 1);
  const changed = bytesOf([a, pod('b', 'SANDBOX_NOTREADY')]);
  assert.equal((method.responseDeserialize(changed) as { items: { state: string }[] }).items[1].state, 'SANDBOX_NOTREADY');
});

test('a complete list lets go of items that are gone; a filtered one keeps them', () => {
  const d = counting();
  const encoder = new ListEncoder('items', serialize, d);
  const a = pod('a', 'SANDBOX_READY');
  const b = pod('b', 'SANDBOX_READY');
  encoder.encode([a, b], true);
  encoder.encode([a], false);
  encoder.encode([b], true);
  assert.equal(d.built, 2, 'b was kept through the filtered list');
  encoder.encode([a], true);
  assert.equal(d.built, 3, 'a was let go by the complete list without it');
});

test('any other response still goes through the method\'s own serializer', () => {
  const bytes = responseBytes({ version: '0.1.0', runtime_name: 'berth', runtime_version: '1', runtime_api_version: 'v1' }, (v) => service.Version.responseSerialize(v as never));
  assert.equal((service.Version.responseDeserialize(bytes) as { runtime_name: string }).runtime_name, 'berth');
});

test('a kept answer is built again only when a part of its key changes', () => {
  const kept = new KeptAnswer((v) => service.Version.responseSerialize(v as never));
  let built = 0;
  const version = (name: string) => () => (built++, { version: '0.1.0', runtime_name: name, runtime_version: '1', runtime_api_version: 'v1' });
  const bytesOf = (key: unknown[], name: string): Buffer => responseBytes(kept.answer(key, version(name)), () => Buffer.alloc(0));
  const config = { a: 1 };
  const first = bytesOf([true, 'r', config], 'one');
  assert.equal(bytesOf([true, 'r', config], 'two'), first);
  assert.equal(built, 1);
  const changed = bytesOf([false, 'r', config], 'three');
  assert.equal((service.Version.responseDeserialize(changed) as { runtime_name: string }).runtime_name, 'three');
  bytesOf([false, 'r', { a: 1 }], 'four');
  assert.equal(built, 3, 'another object in the key is another key');
});

test('items prepared ahead, between turns of the event loop, are not encoded again by the list that follows, which decodes as the list encoded whole', async () => {
  const d = counting();
  const encoder = new ListEncoder('items', serialize, d);
  const pods = [pod('a', 'SANDBOX_READY'), pod('b', 'SANDBOX_NOTREADY'), pod('c', 'SANDBOX_READY')];
  const preparing = encoder.prepare(pods, 2);
  assert.equal(d.built, 0, 'nothing is encoded before the event loop turns');
  await preparing;
  assert.equal(d.built, 3);
  const bytes = method.responseSerialize(encoder.encode(pods, true));
  assert.equal(d.built, 3);
  assert.deepEqual(method.responseDeserialize(bytes), method.responseDeserialize(service.ListPodSandbox.responseSerialize({ items: pods } as never)));
  // An item whose version changed after it was prepared is encoded again by the list.
  const changed = [pod('a', 'SANDBOX_NOTREADY'), pods[1], pods[2]];
  await encoder.prepare(pods);
  assert.equal(d.built, 3);
  assert.equal((method.responseDeserialize(method.responseSerialize(encoder.encode(changed, true))) as { items: { state: string }[] }).items[0].state, 'SANDBOX_NOTREADY');
  assert.equal(d.built, 4);
});
