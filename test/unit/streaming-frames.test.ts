import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { constants as zlibConstants, createDeflate, createInflate } from 'node:zlib';
import {
  HeaderCompressor,
  HeaderDecompressor,
  SpdyFrameDecoder,
  SpdyFrameEncoder,
  decodeNameValueBlock,
  encodeNameValueBlock,
  headersFrom,
  adler32,
  MAX_HEADER_BLOCK,
} from '../../shim/streaming/spdy-frames';
import { SPDY3_HEADER_DICTIONARY } from '../../shim/streaming/spdy-dictionary';
import { WebSocketFrameParser, encodeWebSocketFrame, websocketAcceptKey } from '../../shim/streaming/websocket';
import { JsonObjectSplitter, terminalSizeFrom } from '../../shim/streaming/json-object-splitter';
import { TokenStore } from '../../shim/streaming/token-store';
import { encodeStatus, internalErrorStatus, nonZeroExitStatus, successStatus } from '../../shim/streaming/kube-status';

function deflateWithSyncFlush(blocks: Buffer[]): Promise<Buffer[]> {
  // Node's real zlib, the way Go's spdy framer compresses: one stream, a sync flush per block.
  const d = createDeflate({ dictionary: SPDY3_HEADER_DICTIONARY });
  const out: Buffer[] = [];
  let current: Buffer[] = [];
  d.on('data', (c: Buffer) => current.push(c));
  return blocks
    .reduce(
      (p, block) =>
        p.then(
          () =>
            new Promise<void>((resolve) => {
              d.write(block);
              d.flush(zlibConstants.Z_SYNC_FLUSH, () => {
                out.push(Buffer.concat(current));
                current = [];
                resolve();
              });
            }),
        ),
      Promise.resolve(),
    )
    .then(() => out);
}

function inflateStream(chunks: Buffer[]): Promise<Buffer[]> {
  const i = createInflate({ dictionary: SPDY3_HEADER_DICTIONARY });
  const out: Buffer[] = [];
  let current: Buffer[] = [];
  i.on('data', (c: Buffer) => current.push(c));
  return chunks
    .reduce(
      (p, chunk) =>
        p.then(
          () =>
            new Promise<void>((resolve) => {
              i.write(chunk);
              i.flush(zlibConstants.Z_SYNC_FLUSH, () => {
                out.push(Buffer.concat(current));
                current = [];
                resolve();
              });
            }),
        ),
      Promise.resolve(),
    )
    .then(() => out);
}

describe('SPDY header blocks', () => {
  test('the dictionary is the SPDY/3 one (length and checksum)', () => {
    assert.equal(SPDY3_HEADER_DICTIONARY.length, 1423);
    assert.equal(SPDY3_HEADER_DICTIONARY.subarray(0, 11).toString('latin1'), '\0\0\0\x07options');
    assert.ok(SPDY3_HEADER_DICTIONARY.toString('latin1').endsWith(',*,enq=0.'));
  });

  test('name/value blocks round-trip, several values joined by NUL', () => {
    const h = headersFrom({ streamType: 'stdout', multi: ['a', 'b'] });
    const back = decodeNameValueBlock(encodeNameValueBlock(h));
    assert.deepEqual([...back.entries()], [
      ['streamtype', ['stdout']],
      ['multi', ['a', 'b']],
    ]);
  });

  test('uppercase header names on the wire are refused', () => {
    const block = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]), Buffer.from('A'), Buffer.from([0, 0, 0, 1]), Buffer.from('x')]);
    assert.throws(() => decodeNameValueBlock(block), /lowercase/);
  });

  test('our compressed blocks inflate with a standard zlib stream using the dictionary', async () => {
    const c = new HeaderCompressor();
    const blocks = [encodeNameValueBlock(headersFrom({ streamtype: 'error' })), encodeNameValueBlock(headersFrom({ streamtype: 'stdin', port: '80' }))];
    const inflated = await inflateStream(blocks.map((b) => c.compress(b)));
    assert.deepEqual(inflated, blocks);
  });

  test('every compressed block ends with the empty stored block a sync flush ends with, like a real deflater', async () => {
    // Go's flate reader (client-go) reads the next block header right after a
    // stored block's data; the frame must hold that next header, an empty
    // stored block, or the reader fails at the frame's end and its
    // decompressor stays broken for the rest of the connection: the second
    // SYN_REPLY never decoded and client-go timed out creating streams.
    const blocks = [1, 2, 3].map((i) => encodeNameValueBlock(headersFrom({ streamtype: `s${i}` })));
    const marker = Buffer.from([0x00, 0x00, 0xff, 0xff]);
    for (const real of await deflateWithSyncFlush(blocks)) assert.deepEqual(real.subarray(-4), marker);
    const c = new HeaderCompressor();
    for (const block of blocks) {
      const ours = c.compress(block);
      assert.deepEqual(ours.subarray(-5), Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    }
  });

  test('blocks compressed by a real deflater (as Go sends them) decompress one by one', async () => {
    const blocks = [1, 2, 3].map((i) => encodeNameValueBlock(headersFrom({ streamtype: `s${i}`, requestid: String(i) })));
    const compressed = await deflateWithSyncFlush(blocks);
    const d = new HeaderDecompressor();
    for (let i = 0; i < blocks.length; i++) assert.deepEqual(await d.decompress(compressed[i]), blocks[i]);
    d.close();
  });

  test('a long connection: thousands of blocks decode in order through one inflater', async () => {
    // One inflater for the connection: Go's deflater refers back to earlier
    // blocks, so each block only decodes in the stream it belongs to.
    const blocks = Array.from({ length: 4000 }, (_, i) => encodeNameValueBlock(headersFrom({ streamtype: i % 2 ? 'data' : 'error', port: '8080', requestid: String(i >> 1) })));
    const compressed = await deflateWithSyncFlush(blocks);
    assert.ok(compressed[3999].length < blocks[3999].length, 'later blocks lean on earlier ones');
    const d = new HeaderDecompressor();
    for (let i = 0; i < blocks.length; i++) assert.deepEqual(await d.decompress(compressed[i]), blocks[i]);
    d.close();
    const fresh = new HeaderDecompressor();
    await assert.rejects(fresh.decompress(compressed[3999]), /does not inflate/);
    fresh.close();
  });

  test('a header block inflating past the limit is refused', async () => {
    const [bomb] = await deflateWithSyncFlush([Buffer.alloc(MAX_HEADER_BLOCK + 1)]);
    const d = new HeaderDecompressor();
    await assert.rejects(d.decompress(bomb), /too large/);
    await assert.rejects(d.decompress(bomb), /too large/);
    d.close();
  });

  test('adler32 matches the known value for "Wikipedia"', () => {
    assert.equal(adler32(Buffer.from('Wikipedia')), 0x11e60398);
  });
});

describe('SPDY frames', () => {
  test('every frame type survives encode → decode, split at every byte', async () => {
    const enc = new SpdyFrameEncoder();
    const frames = Buffer.concat([
      enc.synStream(1, headersFrom({ streamtype: 'error' }), { fin: true, priority: 3 }),
      enc.synReply(1, headersFrom({})),
      enc.data(1, Buffer.from('hello'), false),
      enc.data(1, Buffer.alloc(0), true),
      enc.rstStream(3, 5),
      enc.settings([{ id: 7, value: 1 << 20 }]),
      enc.ping(2),
      enc.headers(1, headersFrom({ a: 'b' })),
      enc.windowUpdate(0, 1000),
      enc.goAway(7, 0),
    ]);
    const dec = new SpdyFrameDecoder();
    const got = [];
    for (let i = 0; i < frames.length; i++) got.push(...(await dec.push(frames.subarray(i, i + 1))));
    dec.close();
    assert.deepEqual(
      got.map((f) => f.type),
      ['syn_stream', 'syn_reply', 'data', 'data', 'rst_stream', 'settings', 'ping', 'headers', 'window_update', 'goaway'],
    );
    const syn = got[0];
    assert.ok(syn.type === 'syn_stream');
    assert.equal(syn.streamId, 1);
    assert.equal(syn.priority, 3);
    assert.equal(syn.flags & 1, 1);
    assert.deepEqual(syn.headers.get('streamtype'), ['error']);
    const data = got[2];
    assert.ok(data.type === 'data');
    assert.equal(data.data.toString(), 'hello');
    const settings = got[5];
    assert.ok(settings.type === 'settings');
    assert.deepEqual(settings.entries, [{ flags: 0, id: 7, value: 1 << 20 }]);
    const wu = got[8];
    assert.ok(wu.type === 'window_update');
    assert.equal(wu.delta, 1000);
  });

  test('a control frame of another SPDY version is a protocol error', async () => {
    const bad = Buffer.from([0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
    const dec = new SpdyFrameDecoder();
    await assert.rejects(dec.push(bad), /version/);
    dec.close();
  });
});

describe('WebSocket framing', () => {
  test('accept key follows RFC 6455 section 1.3', () => {
    assert.equal(websocketAcceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  test('masked frames of every length class parse back', () => {
    const parser = new WebSocketFrameParser(true, 1 << 20);
    for (const size of [0, 125, 126, 65535, 65536, 100000]) {
      const payload = Buffer.alloc(size, 7);
      const frames = parser.push(encodeWebSocketFrame(2, payload, true));
      assert.equal(frames.length, 1);
      assert.equal(frames[0].payload.length, size);
      assert.ok(frames[0].payload.equals(payload));
    }
  });

  test('a server refuses unmasked client frames', () => {
    const parser = new WebSocketFrameParser(true, 1024);
    assert.throws(() => parser.push(encodeWebSocketFrame(2, Buffer.from('x'), false)), /masked/);
  });
});

describe('resize stream, tokens, statuses', () => {
  test('concatenated JSON objects split whatever the chunking', () => {
    const s = new JsonObjectSplitter();
    const text = '{"Width":80,"Height":24}{"Width":100,"Height":"x}"} {"Width":1,"Height":2}';
    const got: unknown[] = [];
    for (const ch of text) got.push(...s.push(ch));
    assert.deepEqual(got.map(terminalSizeFrom), [{ width: 80, height: 24 }, undefined, { width: 1, height: 2 }]);
  });

  test('a token works once', () => {
    const store = new TokenStore<string>(60_000);
    const t = store.insert('exec');
    assert.equal(store.consume(t), 'exec');
    assert.equal(store.consume(t), undefined);
    assert.equal(store.consume('nope'), undefined);
  });

  test('a token expires after its TTL', () => {
    let now = 1000;
    const store = new TokenStore<string>(60_000, 10, () => now);
    const t = store.insert('exec');
    now += 60_000;
    assert.equal(store.consume(t), undefined);
  });

  test('the store refuses more pending requests than its cap', () => {
    const store = new TokenStore<number>(60_000, 2);
    store.insert(1);
    store.insert(2);
    assert.throws(() => store.insert(3), /too many/);
  });

  test('statuses have the shape client-go decodes', () => {
    assert.equal(encodeStatus(successStatus(), true).toString(), '{"metadata":{},"status":"Success"}');
    const failure = JSON.parse(encodeStatus(nonZeroExitStatus(3, 'x'), true).toString());
    assert.equal(failure.status, 'Failure');
    assert.equal(failure.reason, 'NonZeroExitCode');
    assert.deepEqual(failure.details, { causes: [{ reason: 'ExitCode', message: '3' }] });
    assert.match(failure.message, /^command terminated with non-zero exit code: /);
    assert.equal(encodeStatus(successStatus(), false).length, 0);
    assert.match(encodeStatus(internalErrorStatus('boom'), false).toString(), /boom/);
  });
});
