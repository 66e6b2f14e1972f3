// The CRI server's wrapping of handlers, in-process with hand-made handler
// tables: error mapping, streaming errors and backpressure, UNIMPLEMENTED.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { CriServer } from '../../shim/server';
import { BerthMetrics } from '../../shim/metrics';
import type { CriHandlers } from '../../shim/handler';
import { notFound, invalidArgument } from '../../runtime/errors';
import { CriClient, grpcCode } from '../support/cri-client';

describe('CriServer', () => {
  const dir = mkdtempSync('/tmp/berth-unit-server-');
  const socketPath = join(dir, 'cri.sock');
  let server: CriServer;
  let client: CriClient;
  let lateCall: Promise<{ aborted: boolean; delivered: boolean }> | undefined;
  const emptyRequests: unknown[] = [];
  const handlers: CriHandlers = {
    async ContainerStatus(request) {
      if (!request.container_id) throw invalidArgument('container_id: must not be empty');
      throw notFound(`container "${request.container_id}" not found`);
    },
    async ImageFsInfo(_request, call) {
      // Answers only after its deadline passed: the answer must be reported undelivered.
      let report!: (r: { aborted: boolean; delivered: boolean }) => void;
      lateCall = new Promise((resolve) => (report = resolve));
      await new Promise<void>((resolve) => call.signal.addEventListener('abort', () => resolve()));
      void call.delivered.then((delivered) => report({ aborted: call.signal.aborted && call.cancelled(), delivered }));
      return { image_filesystems: [], container_filesystems: [] };
    },
    async ListImages(request) {
      emptyRequests.push(request);
      return { images: [] };
    },
    async PodSandboxStatus() {
      throw new Error('disk on fire');
    },
    async StreamImages(_request, sink) {
      for (let i = 0; i < 50; i++) {
        await sink.write({ images: [{ id: `sha256:${String(i).padStart(64, '0')}`, repo_tags: [`img:${i}`], repo_digests: [], size: '1', uid: null, username: '', spec: null, pinned: false }] });
      }
    },
    async StreamContainers(_request, sink) {
      await sink.write({ containers: [] });
      throw notFound('gone mid-stream');
    },
  };

  before(async () => {
    server = new CriServer({
      socketPath,
      maxRecvMessageBytes: 1 << 20,
      maxSendMessageBytes: 1 << 20,
      log: pino({ level: 'silent' }),
      metrics: new BerthMetrics(),
      handlers,
    });
    await server.listen();
    client = new CriClient(socketPath);
  });
  after(async () => {
    client.close();
    await server.shutdown(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  test('model errors map to their gRPC codes with their message', async () => {
    await assert.rejects(client.call('ContainerStatus', { container_id: '' }), (err: Error) => {
      assert.equal(grpcCode(err), status.INVALID_ARGUMENT);
      assert.match(err.message, /container_id: must not be empty/);
      return true;
    });
    await assert.rejects(client.call('ContainerStatus', { container_id: 'abc' }), (err) => grpcCode(err) === status.NOT_FOUND);
  });

  test('an unexpected error is INTERNAL with its message and no stack', async () => {
    await assert.rejects(client.call('PodSandboxStatus', { pod_sandbox_id: 'x' }), (err: Error & { details?: string }) => {
      assert.equal(grpcCode(err), status.INTERNAL);
      assert.equal(err.details, 'disk on fire');
      return true;
    });
  });

  test('an empty request is decoded once: every call gets the same frozen object, defaults filled in', async () => {
    await client.call('ListImages', {});
    await client.call('ListImages', { filter: null });
    assert.equal(emptyRequests.length, 2);
    assert.equal(emptyRequests[0], emptyRequests[1]);
    assert.deepEqual(emptyRequests[0], { filter: null });
    assert.equal(Object.isFrozen(emptyRequests[0]), true);
  });

  test('a read repeated with the same request gets the same frozen object; another request is decoded anew', async () => {
    const asked = (filter: object) => client.call('ListImages', { filter });
    await asked({ image: { image: 'a' } });
    await asked({ image: { image: 'a' } });
    await asked({ image: { image: 'b' } });
    const [first, again, other] = emptyRequests.slice(-3) as Array<{ filter: { image: { image: string } } }>;
    assert.equal(first, again);
    assert.equal(Object.isFrozen(first.filter.image), true);
    assert.notEqual(other, first);
    assert.equal(other.filter.image.image, 'b');
    assert.equal(first.filter.image.image, 'a');
  });

  test('a unary method with no handler is UNIMPLEMENTED', async () => {
    await assert.rejects(client.call('RunPodSandbox', {}), (err: Error) => {
      assert.equal(grpcCode(err), status.UNIMPLEMENTED);
      assert.match(err.message, /RunPodSandbox is not implemented/);
      return true;
    });
  });

  test('a streaming method with no handler is UNIMPLEMENTED', async () => {
    await assert.rejects(client.collect('StreamPodSandboxes', {}), (err: Error) => {
      assert.equal(grpcCode(err), status.UNIMPLEMENTED);
      assert.match(err.message, /StreamPodSandboxes/);
      return true;
    });
  });

  test('a stream delivers every message in order', async () => {
    const messages = await client.collect('StreamImages', {});
    assert.equal(messages.length, 50);
    assert.deepEqual(messages.map((m) => m.images[0].repo_tags[0]), Array.from({ length: 50 }, (_, i) => `img:${i}`));
  });

  test('a stream that fails after some messages ends with the error code', async () => {
    const received: unknown[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of client.stream('StreamContainers', {})) received.push(m);
      })(),
      (err) => grpcCode(err) === status.NOT_FOUND,
    );
    assert.equal(received.length, 1);
  });

  test('a call whose deadline passes sees its signal aborted and its late answer reported undelivered', async () => {
    await assert.rejects(client.call('ImageFsInfo', {}, { timeoutMs: 100 }), (err) => grpcCode(err) === status.DEADLINE_EXCEEDED);
    assert.ok(lateCall);
    assert.deepEqual(await lateCall, { aborted: true, delivered: false });
  });

  test('a request that is no protobuf of its method is INVALID_ARGUMENT naming the method', async () => {
    await assert.rejects(client.callEncoded('ContainerStatus', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])), (err: Error) => {
      assert.equal(grpcCode(err), status.INVALID_ARGUMENT);
      assert.match(err.message, /not a valid ContainerStatus request/);
      return true;
    });
  });
});
