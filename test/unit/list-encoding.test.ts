// ListEncoder: list answers made of per-item encodings kept between calls
// must decode exactly as the message encoded whole, follow each item's
// changes, and let go of items that are gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCriPackage } from '../../cri-proto';
import { ListEncoder, responseBytes, responseSerializer, type ListedItem } from '../../shim/list-encoding';

const service = loadCriPackage().runtime.v1.RuntimeService.service;
const method = {
  responseSerialize: (value: unknown): Buffer => responseBytes(value, (v) => service.ListPodSandbox.responseSerialize(v as never)),
  responseDeserialize: (bytes: Buffer): unknown => service.ListPodSandbox.responseDeserialize(bytes),
};

function pod(id: string, state: string) {
  return { id, metadata: { name: `n-${id}`, uid: `u-${id}`, namespace: 'ns', attempt: 1 }, state, created_at: '1764644000000000000', labels: { app: id }, annotations: { a: 'b' }, runtime_handler: '' };
}

const listed = (pods: ReturnType<typeof pod>[]): ListedItem<ReturnType<typeof pod>>[] => pods.map((p) => ({ key: p.id, version: p.state, item: () => p }));

test('a list encoded item by item decodes as the list encoded whole, and an empty list as an empty message', () => {
  const encoder = new ListEncoder('items', responseSerializer(service, 'ListPodSandbox'));
  const pods = [pod('a', 'SANDBOX_READY'), pod('b', 'SANDBOX_NOTREADY'), pod('c', 'SANDBOX_READY')];
  const bytes = method.responseSerialize(encoder.encode(listed(pods), true));
  assert.deepEqual(method.responseDeserialize(bytes), method.responseDeserialize(service.ListPodSandbox.responseSerialize({ items: pods } as never)));
  assert.deepEqual(method.responseDeserialize(method.responseSerialize(encoder.encode([], true))), { items: [] });
});

test('an item is encoded again when its version changes, and only then', () => {
  const encoder = new ListEncoder('items', responseSerializer(service, 'ListPodSandbox'));
  let built = 0;
  const item = (state: string): ListedItem<ReturnType<typeof pod>> => ({ key: 'a', version: state, item: () => (built++, pod('a', state)) });
  encoder.encode([item('SANDBOX_READY')], true);
  encoder.encode([item('SANDBOX_READY')], true);
  assert.equal(built, 1);
  const bytes = method.responseSerialize(encoder.encode([item('SANDBOX_NOTREADY')], true));
  assert.equal(built, 2);
  assert.equal((method.responseDeserialize(bytes) as { items: { state: string }[] }).items[0].state, 'SANDBOX_NOTREADY');
});

test('a complete list lets go of items that are gone; a filtered one keeps them', () => {
  const encoder = new ListEncoder('items', responseSerializer(service, 'ListPodSandbox'));
  let built = 0;
  const item = (id: string): ListedItem<ReturnType<typeof pod>> => ({ key: id, version: 'v', item: () => (built++, pod(id, 'SANDBOX_READY')) });
  encoder.encode([item('a'), item('b')], true);
  encoder.encode([item('a')], false);
  encoder.encode([item('b')], true);
  assert.equal(built, 2, 'b was kept through the filtered list');
  encoder.encode([item('a')], true);
  assert.equal(built, 3, 'a was let go by the complete list without it');
});

test('any other response still goes through the method\'s own serializer', () => {
  const bytes = responseBytes({ version: '0.1.0', runtime_name: 'berth', runtime_version: '1', runtime_api_version: 'v1' }, (v) => service.Version.responseSerialize(v as never));
  assert.equal((service.Version.responseDeserialize(bytes) as { runtime_name: string }).runtime_name, 'berth');
});
