// berth's HTTP/2 server transport (shim/grpc-wire/http2) on a real unix
// socket, spoken to frame by frame: how answers are written, the framing a
// real client rarely sends (CONTINUATION, padding, priority), flow control,
// and what a broken or hostile client gets (a stream reset or GOAWAY, while
// the server keeps serving other connections).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { GrpcServer } from '../../shim/grpc-wire/grpc-server';
import type { ServerCall } from '../../shim/grpc-wire/server-call';
import { GrpcCode } from '../../shim/grpc-wire/status-codes';
import { MessageReader, framedMessage } from '../../shim/grpc-wire/message-frames';
import { CLIENT_PREFACE, ErrorCode, Flag, FrameType, Setting, frame, uint32Frame } from '../../shim/grpc-wire/http2/frames';
import { RawHttp2Client, type ReceivedFrame, requestBlock, settingsFrame } from '../support/raw-http2-client';

const OK = { code: GrpcCode.OK, details: '' };

/** The gRPC messages in the DATA frames of `streamId`. */
function messagesOn(frames: ReceivedFrame[], streamId: number): Buffer[] {
  const reader = new MessageReader(64 << 20);
  return frames.filter((f) => f.type === FrameType.DATA && f.streamId === streamId).flatMap((f) => reader.push(f.payload).map((m) => m.bytes));
}

const ended = (streamId: number) => (frames: ReceivedFrame[]): boolean =>
  frames.some((f) => f.streamId === streamId && ((f.flags & Flag.END_STREAM && f.type !== FrameType.SETTINGS) || f.type === FrameType.RST_STREAM));

describe('HTTP/2 server transport', () => {
  const dir = mkdtempSync('/tmp/berth-unit-http2-');
  const socket = join(dir, 'h2.sock');
  const server = new GrpcServer({ maxRecvMessageBytes: 1 << 20, maxSendMessageBytes: 4 << 20, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 10_000, maxConcurrentStreams: 3 });
  const hung: ServerCall[] = [];
  const clients: RawHttp2Client[] = [];
  const client = (options?: ConstructorParameters<typeof RawHttp2Client>[1]): RawHttp2Client => {
    const made = new RawHttp2Client(socket, options);
    clients.push(made);
    return made;
  };

  before(async () => {
    server.handle('/t.S/Echo', (call, request) => call.end(OK, request));
    server.handle('/t.S/Big', (call, request) => call.end(OK, Buffer.alloc(Number(request.toString()), 7)));
    server.handle('/t.S/Hang', (call) => void hung.push(call));
    await server.listen(socket);
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.close(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Proves the server still answers on a new connection. */
  async function stillServes(): Promise<void> {
    const fresh = client();
    fresh.request(1, framedMessage(Buffer.from('still here')));
    await fresh.until(ended(1));
    assert.deepEqual(messagesOn(fresh.frames, 1).map(String), ['still here']);
  }

  test('the server opens with SETTINGS and a connection WINDOW_UPDATE, and acknowledges the client settings', async () => {
    const c = client();
    assert.ok(await c.until((frames) => frames.some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK)));
    const settings = c.of(FrameType.SETTINGS).find((f) => !(f.flags & Flag.ACK)) as ReceivedFrame;
    const values = new Map(Array.from({ length: settings.payload.length / 6 }, (_, i) => [settings.payload.readUInt16BE(i * 6), settings.payload.readUInt32BE(i * 6 + 2)]));
    assert.equal(values.get(Setting.MAX_CONCURRENT_STREAMS), 3);
    assert.equal(values.get(Setting.INITIAL_WINDOW_SIZE), 1 << 20);
    assert.ok(values.get(Setting.MAX_HEADER_LIST_SIZE));
    assert.equal(c.of(FrameType.WINDOW_UPDATE, 0)[0].payload.readUInt32BE(0), (1 << 20) - 65535);
  });

  test('a unary answer (HEADERS, DATA, trailers) arrives in one socket read', async () => {
    const c = client();
    await c.until((frames) => frames.some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK));
    c.request(1, framedMessage(Buffer.from('together')));
    await c.until(ended(1));
    const answer = c.frames.filter((f) => f.streamId === 1);
    assert.deepEqual(answer.map((f) => f.type), [FrameType.HEADERS, FrameType.DATA, FrameType.HEADERS]);
    assert.equal(new Set(answer.map((f) => f.read)).size, 1, 'all three frames came in one read');
    assert.equal(answer[0].headers?.[':status'], '200');
    assert.equal(answer[2].headers?.['grpc-status'], '0');
    assert.ok(answer[2].flags & Flag.END_STREAM);
  });

  test('a request whose headers span HEADERS and CONTINUATION frames, with padding and priority fields, is served', async () => {
    const c = client();
    const block = requestBlock('/t.S/Echo', [['x-filler', 'f'.repeat(3000)]]);
    const padding = 17;
    const priority = Buffer.from([0, 0, 0, 0, 16]);
    const first = Buffer.concat([Buffer.from([padding]), priority, block.subarray(0, 1000), Buffer.alloc(padding)]);
    c.send(
      frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, first),
      frame(FrameType.CONTINUATION, 0, 1, block.subarray(1000, 2000)),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(2000)),
      frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, Buffer.concat([Buffer.from([4]), framedMessage(Buffer.from('padded')), Buffer.alloc(4)])),
    );
    await c.until(ended(1));
    assert.deepEqual(messagesOn(c.frames, 1).map(String), ['padded']);
  });

  test('a connection whose bytes arrive one octet per write is served', async () => {
    const c = client({ preface: false });
    const bytes = Buffer.concat([CLIENT_PREFACE, settingsFrame(), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, requestBlock()), frame(FrameType.DATA, Flag.END_STREAM, 1, framedMessage(Buffer.from('trickled')))]);
    for (const byte of bytes) {
      c.send(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await c.until(ended(1));
    assert.deepEqual(messagesOn(c.frames, 1).map(String), ['trickled']);
  });

  test('after a client sets SETTINGS_HEADER_TABLE_SIZE, the next header block opens with a table size update to 0', async () => {
    const c = client({ settings: [[Setting.HEADER_TABLE_SIZE, 0]] });
    c.request(1, framedMessage(Buffer.from('x')));
    c.request(3, framedMessage(Buffer.from('y')));
    await c.until((frames) => ended(1)(frames) && ended(3)(frames));
    const blocks = c.of(FrameType.HEADERS).map((f) => f.payload[0]);
    assert.equal(blocks[0], 0x20, 'the first block starts with the update');
    assert.notEqual(blocks[1], 0x20, 'later blocks do not repeat it');
    // nghttp2, as a client with a 0-octet table, refuses blocks without the update (its whole session fails).
    const session = http2.connect('http://localhost', { createConnection: () => connect(socket), settings: { headerTableSize: 0 } });
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/t.S/Echo', 'content-type': 'application/grpc', te: 'trailers' });
        let grpcStatus = '';
        req.on('trailers', (t) => (grpcStatus = String(t['grpc-status'])));
        req.on('error', reject);
        session.on('error', reject);
        req.on('close', () => resolve(grpcStatus));
        req.resume();
        req.end(framedMessage(Buffer.from('small table')));
      });
      assert.equal(answer, '0');
    } finally {
      session.destroy();
    }
  });

  test('PRIORITY frames and frames of unknown types are ignored', async () => {
    const c = client();
    c.send(frame(FrameType.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 16])), frame(0xfa, 0, 0, Buffer.from('whatever')));
    c.request(1, framedMessage(Buffer.from('after')));
    await c.until(ended(1));
    assert.deepEqual(messagesOn(c.frames, 1).map(String), ['after']);
  });

  test('a 700 KB answer reaches a client with 65535-octet windows whole, in frames the windows allow', async () => {
    const c = client();
    c.request(1, framedMessage(Buffer.from(String(700_000))), '/t.S/Big');
    let granted = 0;
    // Give back what arrived, as a client that reads everything does, until the stream ends.
    while (!ended(1)(c.frames)) {
      const received = c.of(FrameType.DATA, 1).reduce((sum, f) => sum + f.payload.length, 0);
      if (received > granted) {
        c.windowUpdate(0, received - granted);
        c.windowUpdate(1, received - granted);
        granted = received;
      }
      await c.until((frames) => ended(1)(frames) || frames.filter((f) => f.type === FrameType.DATA).reduce((sum, f) => sum + f.payload.length, 0) > granted);
    }
    const data = c.of(FrameType.DATA, 1);
    assert.equal(messagesOn(c.frames, 1)[0].length, 700_000);
    assert.ok(data.every((f) => f.payload.length <= 16_384), 'no frame over the default MAX_FRAME_SIZE');
    assert.equal(c.of(FrameType.HEADERS, 1).at(-1)?.headers?.['grpc-status'], '0');
  });

  test('an answer waits at a zero window and goes on when the client raises INITIAL_WINDOW_SIZE', async () => {
    const c = client({ settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
    c.request(1, framedMessage(Buffer.from('held back')));
    await c.until((frames) => frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 1));
    c.request(3, framedMessage(Buffer.from('second')));
    await c.until((frames) => frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 3));
    assert.equal(c.of(FrameType.DATA).length, 0, 'no DATA with a zero stream window');
    c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 65535]]));
    await c.until((frames) => ended(1)(frames) && ended(3)(frames));
    assert.deepEqual(messagesOn(c.frames, 1).map(String), ['held back']);
    assert.deepEqual(messagesOn(c.frames, 3).map(String), ['second']);
  });

  test('RST_STREAM from the client cancels the call', async () => {
    const c = client();
    const before = hung.length;
    c.request(1, framedMessage(Buffer.from('x')), '/t.S/Hang');
    while (hung.length === before) await new Promise((resolve) => setTimeout(resolve, 5));
    const call = hung[before];
    const cancelled = new Promise<void>((resolve) => call.onCancel(resolve));
    c.send(uint32Frame(FrameType.RST_STREAM, 1, ErrorCode.CANCEL));
    await cancelled;
    assert.equal(call.cancelled, true);
    assert.equal(call.end(OK, Buffer.from('late')), false);
  });

  test('a PING is answered with a PING ACK carrying the same 8 octets', async () => {
    const c = client();
    c.send(frame(FrameType.PING, 0, 0, Buffer.from('berth-h2')));
    await c.until((frames) => frames.some((f) => f.type === FrameType.PING && f.flags & Flag.ACK));
    assert.equal(c.of(FrameType.PING).find((f) => f.flags & Flag.ACK)?.payload.toString(), 'berth-h2');
  });

  test('streams over MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM', async () => {
    const c = client();
    for (const id of [1, 3, 5, 7]) c.request(id, framedMessage(Buffer.from('x')), '/t.S/Hang');
    await c.until((frames) => frames.some((f) => f.type === FrameType.RST_STREAM));
    const resets = c.of(FrameType.RST_STREAM);
    assert.deepEqual(resets.map((f) => [f.streamId, f.payload.readUInt32BE(0)]), [[7, ErrorCode.REFUSED_STREAM]]);
  });

  const brokenClients: Array<[string, (c: RawHttp2Client) => void, number]> = [
    ['an oversized frame is FRAME_SIZE_ERROR', (c) => c.send(frame(FrameType.DATA, 0, 1, Buffer.alloc(20_000))), ErrorCode.FRAME_SIZE_ERROR],
    ['a header block naming an index past the tables is COMPRESSION_ERROR', (c) => c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0xff, 0x50]))), ErrorCode.COMPRESSION_ERROR],
    ['a Huffman string with bad padding is COMPRESSION_ERROR', (c) => c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x04, 0x81, 0x18]))), ErrorCode.COMPRESSION_ERROR],
    ['a stream opened with an even id is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 2, requestBlock())), ErrorCode.PROTOCOL_ERROR],
    ['a stream id below one already opened is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 5, requestBlock('/t.S/Hang')), frame(FrameType.HEADERS, Flag.END_HEADERS, 3, requestBlock())), ErrorCode.PROTOCOL_ERROR],
    ['PUSH_PROMISE from a client is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.from([0, 0, 0, 2, 0x82]))), ErrorCode.PROTOCOL_ERROR],
    ['a frame between HEADERS and its CONTINUATION is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.HEADERS, 0, 1, requestBlock()), frame(FrameType.PING, 0, 0, Buffer.alloc(8))), ErrorCode.PROTOCOL_ERROR],
    ['endless CONTINUATION frames are ENHANCE_YOUR_CALM', (c) => c.send(frame(FrameType.HEADERS, 0, 1, requestBlock()), ...Array.from({ length: 6 }, () => frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(16_000, 0x82)))), ErrorCode.ENHANCE_YOUR_CALM],
    ['DATA on a stream never opened is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.DATA, 0, 9, Buffer.alloc(10))), ErrorCode.PROTOCOL_ERROR],
    ['a WINDOW_UPDATE taking the connection window past 2^31-1 is FLOW_CONTROL_ERROR', (c) => c.windowUpdate(0, 2 ** 31 - 1), ErrorCode.FLOW_CONTROL_ERROR],
    ['padding as long as its frame is PROTOCOL_ERROR', (c) => c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PADDED, 1, Buffer.from([5, 0x82]))), ErrorCode.PROTOCOL_ERROR],
    ['a SETTINGS frame whose length is not a multiple of 6 is FRAME_SIZE_ERROR', (c) => c.send(frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(7))), ErrorCode.FRAME_SIZE_ERROR],
  ];
  for (const [behaviour, misbehave, code] of brokenClients) {
    test(`${behaviour}: GOAWAY, close, and the server keeps serving`, async () => {
      const c = client();
      misbehave(c);
      assert.ok(await c.until((frames) => frames.some((f) => f.type === FrameType.GOAWAY)), 'a GOAWAY arrived');
      assert.equal(c.goawayCode(), code);
      await c.until(() => false);
      assert.equal(c.closed, true);
      await stillServes();
    });
  }

  test('a connection that does not start with the client preface gets GOAWAY PROTOCOL_ERROR and is closed', async () => {
    const c = client({ preface: false });
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await c.until(() => false);
    assert.equal(c.goawayCode(), ErrorCode.PROTOCOL_ERROR);
    await stillServes();
  });

  test('a small block that references one big table entry past SETTINGS_MAX_HEADER_LIST_SIZE is answered 431 and the connection goes on', async () => {
    const c = client();
    // A literal added to the dynamic table: new name "x-big", a 4000-octet value (7-bit prefix integer 127 + 3873).
    const bigEntry = Buffer.concat([Buffer.from([0x40, 0x05]), Buffer.from('x-big'), Buffer.from([0x7f, 0xa1, 0x1e]), Buffer.alloc(4000, 'v')]);
    // Then 16 one-octet references to it (index 62, the newest dynamic entry): a 68 KB header list.
    const block = Buffer.concat([requestBlock(), bigEntry, Buffer.alloc(16, 0xbe)]);
    c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block));
    await c.until(ended(1));
    assert.equal(c.of(FrameType.HEADERS, 1)[0].headers?.[':status'], '431');
    c.request(3, framedMessage(Buffer.from('next')));
    await c.until(ended(3));
    assert.deepEqual(messagesOn(c.frames, 3).map(String), ['next']);
  });

  test('a malformed request (uppercase header name) is reset with PROTOCOL_ERROR and the connection goes on', async () => {
    const c = client();
    const block = Buffer.concat([requestBlock(), Buffer.from([0x00, 0x03]), Buffer.from('X-A'), Buffer.from([0x01]), Buffer.from('b')]);
    c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block));
    await c.until(ended(1));
    assert.equal(c.of(FrameType.RST_STREAM, 1)[0].payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR);
    c.request(3, framedMessage(Buffer.from('fine')));
    await c.until(ended(3));
    assert.deepEqual(messagesOn(c.frames, 3).map(String), ['fine']);
  });

  test('a stream WINDOW_UPDATE past 2^31-1 resets that stream with FLOW_CONTROL_ERROR and the connection goes on', async () => {
    const c = client();
    c.request(1, framedMessage(Buffer.from('x')), '/t.S/Hang');
    await c.until((frames) => frames.some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK));
    c.windowUpdate(1, 2 ** 31 - 1);
    await c.until(ended(1));
    assert.equal(c.of(FrameType.RST_STREAM, 1)[0].payload.readUInt32BE(0), ErrorCode.FLOW_CONTROL_ERROR);
    c.request(3, framedMessage(Buffer.from('fine')));
    await c.until(ended(3));
    assert.deepEqual(messagesOn(c.frames, 3).map(String), ['fine']);
  });

  test('a client that floods 5 MB of PINGs before reading any answer gets every PING ACK once it reads', async () => {
    const pings = 300_000;
    const raw = connect(socket);
    raw.pause();
    raw.write(Buffer.concat([CLIENT_PREFACE, settingsFrame()]));
    const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => ping));
    // Written without waiting for 'drain': the server stops reading once ~4 MiB of ACKs wait unread, so most of it waits in this client.
    for (let i = 0; i < pings / 1000; i++) raw.write(batch);
    let acks = 0;
    let pending = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      raw.on('error', reject);
      raw.on('data', (chunk: Buffer) => {
        let data = Buffer.concat([pending, chunk]);
        while (data.length >= 9 && data.length >= 9 + data.readUIntBE(0, 3)) {
          if (data[3] === FrameType.PING && data[4] & Flag.ACK) acks++;
          data = data.subarray(9 + data.readUIntBE(0, 3));
        }
        pending = data;
        if (acks === pings) resolve();
      });
      raw.resume();
    });
    raw.destroy();
    assert.equal(acks, pings);
  });

  test('a keepalive ping the client never answers closes the connection', async () => {
    const own = new GrpcServer({ maxRecvMessageBytes: 1024, maxSendMessageBytes: 1024, keepaliveTimeMs: 20, keepaliveTimeoutMs: 20 });
    const ownSocket = join(dir, 'keepalive.sock');
    await own.listen(ownSocket);
    const c = new RawHttp2Client(ownSocket);
    clients.push(c);
    await c.until(() => false);
    assert.ok(c.of(FrameType.PING).some((f) => !(f.flags & Flag.ACK)), 'the server pinged');
    await own.close(1000);
  });

  test('graceful close: GOAWAY names the last stream, the call in flight finishes, a later stream is not taken', async () => {
    const own = new GrpcServer({ maxRecvMessageBytes: 1024, maxSendMessageBytes: 1024, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 10_000 });
    const ownSocket = join(dir, 'graceful.sock');
    const parked: ServerCall[] = [];
    own.handle('/t.S/Hang', (call) => void parked.push(call));
    own.handle('/t.S/Echo', (call, request) => call.end(OK, request));
    await own.listen(ownSocket);
    const c = new RawHttp2Client(ownSocket);
    clients.push(c);
    c.request(1, framedMessage(Buffer.from('x')), '/t.S/Hang');
    while (parked.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const closed = own.close(5000);
    await c.until((frames) => frames.some((f) => f.type === FrameType.GOAWAY));
    const goaway = c.of(FrameType.GOAWAY)[0];
    assert.equal(goaway.payload.readUInt32BE(0), 1, 'last stream id');
    assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.NO_ERROR);
    c.request(3, framedMessage(Buffer.from('too late')), '/t.S/Echo');
    parked[0].end(OK, Buffer.from('finished'));
    await c.until(() => false);
    assert.deepEqual(messagesOn(c.frames, 1).map(String), ['finished']);
    assert.equal(c.frames.filter((f) => f.streamId === 3).length, 0, 'stream 3 was not answered');
    await closed;
    assert.equal(await new Promise((resolve) => connect(ownSocket).once('error', () => resolve('refused')).once('connect', () => resolve('accepted'))), 'refused');
  });
});
