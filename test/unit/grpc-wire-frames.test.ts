// The pure parts of berth's gRPC wire: message framing, grpc-timeout values,
// grpc-message percent-encoding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageReader, MessageTooLarge, framedMessage, frameHeader } from '../../shim/grpc-wire/message-frames';
import { parseGrpcTimeout } from '../../shim/grpc-wire/grpc-timeout';
import { decodeGrpcMessage, encodeGrpcMessage } from '../../shim/grpc-wire/status-message';

test('a message split over many chunks is reassembled whole', () => {
  const body = Buffer.from('hello, framed world');
  const wire = framedMessage(body);
  const reader = new MessageReader(1024);
  const got = [];
  for (let i = 0; i < wire.length; i++) got.push(...reader.push(wire.subarray(i, i + 1)));
  assert.equal(got.length, 1);
  assert.deepEqual(got[0].bytes, body);
  assert.equal(got[0].compressed, false);
  assert.ok(reader.atBoundary);
});

test('several messages in one chunk come out in order, an empty one included', () => {
  const reader = new MessageReader(1024);
  const got = reader.push(Buffer.concat([framedMessage(Buffer.from('a')), framedMessage(Buffer.alloc(0)), framedMessage(Buffer.from('ccc'))]));
  assert.deepEqual(got.map((m) => m.bytes.toString()), ['a', '', 'ccc']);
});

test('a half-read message leaves the reader off a boundary', () => {
  const reader = new MessageReader(1024);
  assert.deepEqual(reader.push(framedMessage(Buffer.from('abcdef')).subarray(0, 7)), []);
  assert.equal(reader.atBoundary, false);
});

test('the compressed flag is reported', () => {
  const reader = new MessageReader(1024);
  const [message] = reader.push(Buffer.concat([frameHeader(2, true), Buffer.from('zz')]));
  assert.equal(message.compressed, true);
});

test('a message declared larger than the limit is refused from its header alone', () => {
  const reader = new MessageReader(10);
  assert.throws(() => reader.push(frameHeader(11)), (err) => err instanceof MessageTooLarge && err.length === 11 && err.limit === 10);
});

test('grpc-timeout values are read in every unit and malformed ones are refused', () => {
  assert.equal(parseGrpcTimeout('2H'), 7_200_000);
  assert.equal(parseGrpcTimeout('3M'), 180_000);
  assert.equal(parseGrpcTimeout('10S'), 10_000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('5000u'), 5);
  assert.equal(parseGrpcTimeout('1000000n'), 1);
  for (const bad of ['', '10', 'S', '123456789S', '1.5S', '-1S', '10s', '10 S']) assert.equal(parseGrpcTimeout(bad), undefined, bad);
});

test('grpc-message is percent-encoded outside printable ASCII and for "%", and decodes back', () => {
  assert.equal(encodeGrpcMessage('plain text: ok'), 'plain text: ok');
  assert.equal(encodeGrpcMessage('100% sure'), '100%25 sure');
  assert.equal(encodeGrpcMessage('line\nbreak'), 'line%0Abreak');
  assert.equal(encodeGrpcMessage('é'), '%C3%A9');
  for (const text of ['100% sure', 'ünïcødé ✓', 'tab\there', '%zz stays']) assert.equal(decodeGrpcMessage(encodeGrpcMessage(text)), text);
  assert.equal(decodeGrpcMessage('bad %zz escape'), 'bad %zz escape');
});
