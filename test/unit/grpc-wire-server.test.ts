// berth's gRPC server (shim/grpc-wire) on a real unix socket, spoken to by a
// raw HTTP/2 client (to see frames, headers and trailers as sent) and by
// grpc-js's client (to check the two agree).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer } from '../../shim/grpc-wire/grpc-server';
import type { ServerCall } from '../../shim/grpc-wire/server-call';
import { GrpcCode } from '../../shim/grpc-wire/status-codes';
import { MessageReader, frameHeader, framedMessage } from '../../shim/grpc-wire/message-frames';
import { decodeGrpcMessage } from '../../shim/grpc-wire/status-message';

interface RawAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  grpcStatus?: number;
  grpcMessage?: string;
  messages: Buffer[];
  trailersOnly: boolean;
}

function rawCall(session: http2.ClientHttp2Session, path: string, body: Buffer, extra: http2.OutgoingHttpHeaders = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
    const answer: RawAnswer = { status: 0, headers: {}, messages: [], trailersOnly: false };
    const reader = new MessageReader(64 << 20);
    const status = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] === undefined) return;
      answer.grpcStatus = Number(h['grpc-status']);
      answer.grpcMessage = decodeGrpcMessage(String(h['grpc-message'] ?? ''));
    };
    req.on('response', (h) => {
      answer.status = Number(h[':status']);
      answer.headers = h;
      answer.trailersOnly = h['grpc-status'] !== undefined;
      status(h);
    });
    req.on('trailers', status);
    req.on('data', (chunk: Buffer) => answer.messages.push(...reader.push(chunk).map((m) => m.bytes)));
    req.on('close', () => resolve(answer));
    req.on('error', reject);
    req.end(body);
  });
}

describe('GrpcServer', () => {
  const dir = mkdtempSync('/tmp/berth-unit-grpc-wire-');
  const socket = join(dir, 'wire.sock');
  const server = new GrpcServer({ maxRecvMessageBytes: 1024, maxSendMessageBytes: 256 * 1024, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 10_000 });
  let session: http2.ClientHttp2Session;
  /** Calls parked by /t.S/Hang, with what became of them. */
  const hung: Array<{ call: ServerCall; cancelledBy: Promise<void> }> = [];
  let reversedOrder: Array<() => void> = [];

  before(async () => {
    server.handle('/t.S/Echo', (call, request) => call.end({ code: GrpcCode.OK, details: '' }, request));
    server.handle('/t.S/Fail', (call) => call.end({ code: GrpcCode.NOT_FOUND, details: 'conteneur "é" introuvable: 100% sûr' }));
    server.handle('/t.S/Big', (call, request) => call.end({ code: GrpcCode.OK, details: '' }, Buffer.alloc(Number(request.toString()), 1)));
    server.handle('/t.S/Hang', (call) => {
      hung.push({ call, cancelledBy: new Promise((resolve) => call.signal.addEventListener('abort', () => resolve())) });
    });
    server.handle('/t.S/Slow', (call, request) => {
      // Answers once the next Slow call arrives, so calls in flight overlap and finish out of order.
      reversedOrder.push(() => call.end({ code: GrpcCode.OK, details: '' }, request));
    });
    server.handle('/t.S/Stream', async (call, request) => {
      const [count, size] = request.toString().split(',').map(Number);
      for (let i = 0; i < count; i++) {
        const message = Buffer.alloc(size, i % 256);
        message.writeUInt32BE(i, 0);
        if (!(await call.send(message))) return;
      }
      call.end(count > 3 ? { code: GrpcCode.OK, details: '' } : { code: GrpcCode.ABORTED, details: 'stopped after a few' });
    });
    await server.listen(socket);
    session = http2.connect('http://localhost', { createConnection: () => connect(socket) });
  });
  after(async () => {
    session.close();
    await server.close(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a unary answer is headers, one message and trailers with grpc-status 0', async () => {
    const r = await rawCall(session, '/t.S/Echo', framedMessage(Buffer.from('ping')));
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/grpc');
    assert.equal(r.trailersOnly, false);
    assert.deepEqual(r.messages.map(String), ['ping']);
    assert.equal(r.grpcStatus, GrpcCode.OK);
  });

  test('an error with nothing sent is a trailers-only answer, its message percent-encoded', async () => {
    const r = await rawCall(session, '/t.S/Fail', framedMessage(Buffer.alloc(0)));
    assert.equal(r.trailersOnly, true);
    assert.equal(r.grpcStatus, GrpcCode.NOT_FOUND);
    assert.equal(r.grpcMessage, 'conteneur "é" introuvable: 100% sûr');
    assert.match(String(r.headers['grpc-message']), /^[\x20-\x7e]*$/);
  });

  test('an unknown method answers UNIMPLEMENTED naming it', async () => {
    const r = await rawCall(session, '/t.S/Nope', framedMessage(Buffer.alloc(0)));
    assert.equal(r.grpcStatus, GrpcCode.UNIMPLEMENTED);
    assert.match(r.grpcMessage ?? '', /\/t\.S\/Nope/);
  });

  test('a request over the receive limit is RESOURCE_EXHAUSTED and the connection keeps serving', async () => {
    const r = await rawCall(session, '/t.S/Echo', framedMessage(Buffer.alloc(2048)));
    assert.equal(r.grpcStatus, GrpcCode.RESOURCE_EXHAUSTED);
    assert.match(r.grpcMessage ?? '', /2048 bytes.*1024/);
    assert.equal((await rawCall(session, '/t.S/Echo', framedMessage(Buffer.from('after')))).messages[0].toString(), 'after');
  });

  test('an answer over the send limit is RESOURCE_EXHAUSTED instead of the message', async () => {
    const r = await rawCall(session, '/t.S/Big', framedMessage(Buffer.from(String(300 * 1024))));
    assert.equal(r.grpcStatus, GrpcCode.RESOURCE_EXHAUSTED);
    assert.equal(r.messages.length, 0);
    const fits = await rawCall(session, '/t.S/Big', framedMessage(Buffer.from(String(200 * 1024))));
    assert.equal(fits.grpcStatus, GrpcCode.OK);
    assert.equal(fits.messages[0].length, 200 * 1024);
  });

  test('a request with no message, two messages or a cut message is INVALID_ARGUMENT', async () => {
    assert.equal((await rawCall(session, '/t.S/Echo', Buffer.alloc(0))).grpcStatus, GrpcCode.INVALID_ARGUMENT);
    const two = Buffer.concat([framedMessage(Buffer.from('a')), framedMessage(Buffer.from('b'))]);
    assert.equal((await rawCall(session, '/t.S/Echo', two)).grpcStatus, GrpcCode.INVALID_ARGUMENT);
    const cut = Buffer.concat([frameHeader(40), Buffer.from('abc')]);
    const r = await rawCall(session, '/t.S/Echo', cut);
    assert.equal(r.grpcStatus, GrpcCode.INVALID_ARGUMENT);
    assert.match(r.grpcMessage ?? '', /ended inside a message/);
  });

  test('a malformed grpc-timeout is INVALID_ARGUMENT naming the header', async () => {
    const r = await rawCall(session, '/t.S/Echo', framedMessage(Buffer.from('x')), { 'grpc-timeout': 'soon' });
    assert.equal(r.grpcStatus, GrpcCode.INVALID_ARGUMENT);
    assert.match(r.grpcMessage ?? '', /grpc-timeout/);
  });

  test('a passed deadline ends the call with DEADLINE_EXCEEDED from the server and aborts its signal', async () => {
    const before = hung.length;
    const r = await rawCall(session, '/t.S/Hang', framedMessage(Buffer.from('x')), { 'grpc-timeout': '30m' });
    assert.equal(r.grpcStatus, GrpcCode.DEADLINE_EXCEEDED);
    const parked = hung[before];
    await parked.cancelledBy;
    assert.equal(parked.call.cancelled, true);
    assert.equal(parked.call.end({ code: GrpcCode.OK, details: '' }, Buffer.from('late')), false, 'a late answer is not delivered');
  });

  test('a client that resets the stream cancels the call', async () => {
    const before = hung.length;
    const req = session.request({ ':method': 'POST', ':path': '/t.S/Hang', 'content-type': 'application/grpc' });
    req.on('error', () => undefined);
    req.end(framedMessage(Buffer.from('x')));
    while (hung.length === before) await new Promise((resolve) => setTimeout(resolve, 5));
    let heard = false;
    hung[before].call.onCancel(() => (heard = true));
    req.close(http2.constants.NGHTTP2_CANCEL);
    await hung[before].cancelledBy;
    assert.equal(heard, true);
    assert.equal(hung[before].call.cancelled, true);
  });

  test('a gzip-compressed request is decompressed; an unknown encoding is UNIMPLEMENTED', async () => {
    const body = gzipSync(Buffer.from('squeezed'));
    const framed = Buffer.concat([frameHeader(body.length, true), body]);
    const r = await rawCall(session, '/t.S/Echo', framed, { 'grpc-encoding': 'gzip' });
    assert.deepEqual(r.messages.map(String), ['squeezed']);
    const odd = await rawCall(session, '/t.S/Echo', framed, { 'grpc-encoding': 'snappy' });
    assert.equal(odd.grpcStatus, GrpcCode.UNIMPLEMENTED);
  });

  test('not a POST is 405 and not application/grpc is 415', async () => {
    const answer = (headers: http2.OutgoingHttpHeaders): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = session.request(headers, { endStream: true });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.resume();
      });
    assert.equal(await answer({ ':method': 'GET', ':path': '/t.S/Echo' }), 405);
    assert.equal(await answer({ ':method': 'POST', ':path': '/t.S/Echo', 'content-type': 'text/plain' }), 415);
  });

  test('a server stream delivers every message in order past flow-control windows, then its status', async () => {
    const r = await rawCall(session, '/t.S/Stream', framedMessage(Buffer.from('40,65536')));
    assert.equal(r.grpcStatus, GrpcCode.OK);
    assert.equal(r.messages.length, 40);
    assert.deepEqual(r.messages.map((m) => m.readUInt32BE(0)), Array.from({ length: 40 }, (_, i) => i));
    const failed = await rawCall(session, '/t.S/Stream', framedMessage(Buffer.from('2,10')));
    assert.equal(failed.messages.length, 2);
    assert.equal(failed.trailersOnly, false);
    assert.equal(failed.grpcStatus, GrpcCode.ABORTED);
  });

  test('concurrent calls on one connection each get their own answer, in whatever order they finish', async () => {
    reversedOrder = [];
    const calls = Array.from({ length: 20 }, (_, i) => rawCall(session, '/t.S/Slow', framedMessage(Buffer.from(`call-${i}`))));
    while (reversedOrder.length < 20) await new Promise((resolve) => setTimeout(resolve, 5));
    for (const answer of reversedOrder.reverse()) answer();
    const answers = await Promise.all(calls);
    assert.deepEqual(answers.map((a) => a.messages[0].toString()), Array.from({ length: 20 }, (_, i) => `call-${i}`));
  });

  test('grpc-js clients get answers, errors and their own deadlines from it', async () => {
    const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
    const call = (path: string, body: Buffer, deadlineMs = 5000): Promise<Buffer> =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, value) => (err ? reject(err) : resolve(value as Buffer))),
      );
    try {
      assert.equal((await call('/t.S/Echo', Buffer.from('hi'))).toString(), 'hi');
      await assert.rejects(call('/t.S/Fail', Buffer.alloc(0)), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && err.details === 'conteneur "é" introuvable: 100% sûr');
      await assert.rejects(call('/t.S/Hang', Buffer.alloc(0), 50), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
    } finally {
      client.close();
    }
  });

  test('close lets a call in flight finish before the connection goes', async () => {
    const own = new GrpcServer({ maxRecvMessageBytes: 1024, maxSendMessageBytes: 1024, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 10_000 });
    const ownSocket = join(dir, 'closing.sock');
    let finish: (() => void) | undefined;
    own.handle('/t.S/Later', (call) => (finish = () => call.end({ code: GrpcCode.OK, details: '' }, Buffer.from('done'))));
    await own.listen(ownSocket);
    const ownSession = http2.connect('http://localhost', { createConnection: () => connect(ownSocket) });
    const answer = rawCall(ownSession, '/t.S/Later', framedMessage(Buffer.alloc(0)));
    while (!finish) await new Promise((resolve) => setTimeout(resolve, 5));
    const closed = own.close(5000);
    finish();
    assert.deepEqual((await answer).messages.map(String), ['done']);
    await closed;
    ownSession.destroy();
  });
});
