// HPACK (RFC 7541) as berth's HTTP/2 transport decodes and encodes it,
// checked against the examples of RFC 7541 Appendix C: the header lists and
// the dynamic table after each block, with and without Huffman coding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CompressionError, HpackDecoder } from '../../shim/grpc-wire/http2/hpack-decoder';
import { encodeHeaderBlock } from '../../shim/grpc-wire/http2/hpack-encoder';
import { huffmanDecode } from '../../shim/grpc-wire/http2/huffman-decoder';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

const FIRST_REQUEST = { ':method': 'GET', ':scheme': 'http', ':path': '/', ':authority': 'www.example.com' };
const SECOND_REQUEST = { ...FIRST_REQUEST, 'cache-control': 'no-cache' };
const THIRD_REQUEST = { ':method': 'GET', ':scheme': 'https', ':path': '/index.html', ':authority': 'www.example.com', 'custom-key': 'custom-value' };

function decodesRequests(blocks: string[]): void {
  const decoder = new HpackDecoder();
  assert.deepEqual({ ...decoder.decode(hex(blocks[0])).headers }, FIRST_REQUEST);
  assert.deepEqual(decoder.table, [[':authority', 'www.example.com']]);
  assert.equal(decoder.tableSize, 57);
  assert.deepEqual({ ...decoder.decode(hex(blocks[1])).headers }, SECOND_REQUEST);
  assert.deepEqual(decoder.table, [['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
  assert.equal(decoder.tableSize, 110);
  assert.deepEqual({ ...decoder.decode(hex(blocks[2])).headers }, THIRD_REQUEST);
  assert.deepEqual(decoder.table, [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
  assert.equal(decoder.tableSize, 164);
}

test('RFC 7541 C.2: literal fields with, without and never indexed, and an indexed field', () => {
  const decoder = new HpackDecoder();
  assert.deepEqual({ ...decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')).headers }, { 'custom-key': 'custom-header' });
  assert.equal(decoder.tableSize, 55);
  const fresh = new HpackDecoder();
  assert.deepEqual({ ...fresh.decode(hex('040c 2f73 616d 706c 652f 7061 7468')).headers }, { ':path': '/sample/path' });
  assert.deepEqual({ ...fresh.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')).headers }, { password: 'secret' });
  assert.deepEqual({ ...fresh.decode(hex('82')).headers }, { ':method': 'GET' });
  assert.equal(fresh.tableSize, 0);
});

test('RFC 7541 C.3: three requests share one dynamic table', () => {
  decodesRequests([
    '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
    '8286 84be 5808 6e6f 2d63 6163 6865',
    '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
  ]);
});

test('RFC 7541 C.4: the same requests Huffman-coded', () => {
  decodesRequests(['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf']);
});

const DATE_21 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE_22 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';

function decodesResponses(blocks: string[]): void {
  // Appendix C.5 and C.6 use a 256-octet table, so entries are evicted.
  const decoder = new HpackDecoder(256);
  assert.deepEqual({ ...decoder.decode(hex(blocks[0])).headers }, { ':status': '302', 'cache-control': 'private', date: DATE_21, location: 'https://www.example.com' });
  assert.equal(decoder.tableSize, 222);
  assert.deepEqual({ ...decoder.decode(hex(blocks[1])).headers }, { ':status': '307', 'cache-control': 'private', date: DATE_21, location: 'https://www.example.com' });
  assert.deepEqual(decoder.table[0], [':status', '307']);
  assert.equal(decoder.table.length, 4, ':status 302 was evicted');
  assert.equal(decoder.tableSize, 222);
  const third = decoder.decode(hex(blocks[2])).headers;
  assert.deepEqual({ ...third }, { ':status': '200', 'cache-control': 'private', date: DATE_22, location: 'https://www.example.com', 'content-encoding': 'gzip', 'set-cookie': COOKIE });
  assert.deepEqual(decoder.table.map(([name]) => name), ['set-cookie', 'content-encoding', 'date']);
  assert.equal(decoder.tableSize, 215);
}

test('RFC 7541 C.5: responses evict the oldest entries of a 256-octet table', () => {
  decodesResponses([
    '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
    '4803 3330 37c1 c0bf',
    '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
  ]);
});

test('RFC 7541 C.6: the same responses Huffman-coded', () => {
  decodesResponses([
    '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
    '4883 640e ffc1 c0bf',
    '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
  ]);
});

test('Huffman strings that end in EOS, in more than 7 bits of padding or in padding with a zero bit are refused', () => {
  // "a" is the 5-bit code 00011; three one bits of padding complete the octet.
  assert.equal(huffmanDecode(hex('1f'), 0, 1), 'a');
  assert.throws(() => huffmanDecode(hex('1fff'), 0, 2), /padding/);
  assert.throws(() => huffmanDecode(hex('18'), 0, 1), /padding/);
  assert.throws(() => huffmanDecode(hex('ffffffff'), 0, 4), /EOS/);
});

test('a dynamic table size update is honoured, and one over the advertised size or after a field is a compression error', () => {
  const decoder = new HpackDecoder(4096);
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.equal(decoder.tableSize, 55);
  // 0x20: size update to 0 empties the table; 0x3f e1 1f: update to 4096.
  decoder.decode(hex('20 3fe11f 82'));
  assert.equal(decoder.tableSize, 0);
  assert.throws(() => new HpackDecoder(4096).decode(hex('3fe21f')), CompressionError, 'an update to 4097');
  assert.throws(() => new HpackDecoder().decode(hex('82 20')), /after the first header field/);
});

test('bad indexes, truncated integers and strings past the block are compression errors', () => {
  assert.throws(() => new HpackDecoder().decode(hex('80')), /index 0/);
  assert.throws(() => new HpackDecoder().decode(hex('be')), /past the tables/);
  assert.throws(() => new HpackDecoder().decode(hex('ff')), /inside an integer/);
  assert.throws(() => new HpackDecoder().decode(hex('ffffffffffff7f')), /too large/);
  assert.throws(() => new HpackDecoder().decode(hex('400a 6375')), /runs past/);
});

test('a header list over the size limit is reported oversized while the table stays in step', () => {
  const decoder = new HpackDecoder();
  const block = hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be be be');
  const decoded = decoder.decode(block, 120);
  assert.equal(decoded.oversized, true);
  assert.deepEqual({ ...decoded.headers }, { 'custom-key': 'custom-header, custom-header' });
  assert.equal(decoder.tableSize, 55);
});

test('a header named __proto__ is a plain field', () => {
  const block = encodeHeaderBlock([['__proto__', 'x'], ['constructor', 'y']]);
  const headers = new HpackDecoder().decode(block).headers;
  assert.equal(headers.__proto__, 'x');
  assert.equal(headers.constructor, 'y');
});

test('what the encoder writes decodes back, static-table fields as one octet', () => {
  const fields: Array<[string, string]> = [[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '5'], ['grpc-message', 'x'.repeat(300)]];
  const block = encodeHeaderBlock(fields);
  assert.equal(block[0], 0x88);
  assert.deepEqual({ ...new HpackDecoder().decode(block).headers }, Object.fromEntries(fields));
});

/** Huffman code (RFC 7541 Appendix B) of strings over ten symbols whose codes are 5 bits, their index among them. */
function huffman5(text: string): Buffer {
  const symbols = '012aceiost';
  let bits = '';
  for (const ch of text) bits += symbols.indexOf(ch).toString(2).padStart(5, '0');
  bits = bits.padEnd(Math.ceil(bits.length / 8) * 8, '1');
  return Buffer.from(bits.match(/.{8}/g)!.map((byte) => parseInt(byte, 2)));
}

test('Huffman-coded values repeated across blocks, and more distinct ones than are kept, all decode right', () => {
  const decoder = new HpackDecoder();
  const pathBlock = (value: string): Buffer => {
    const code = huffman5(value);
    // 0x04: literal without indexing, name :path (static index 4); then a Huffman string.
    return Buffer.concat([Buffer.from([0x04, 0x80 | code.length]), code]);
  };
  const values: string[] = [];
  for (let i = 0; i < 300; i++) values.push(`ca${i.toString(3).replace(/./g, (d) => 'ist'[Number(d)])}0toast`);
  for (let round = 0; round < 2; round++) {
    for (const value of values) assert.equal(decoder.decode(pathBlock(value)).headers[':path'], value);
  }
  assert.throws(() => decoder.decode(hex('04 84 ffffffff')), CompressionError, 'EOS in a string is refused, kept values or not');
});
