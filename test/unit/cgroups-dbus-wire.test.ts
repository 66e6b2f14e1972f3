// The D-Bus wire format as berth writes and reads it (pure logic; the real
// exchange with systemd is in test/integration/systemd-cgroups.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, encodeMessage, messageLength, MessageType, splitSignature, variant, WireReader, WireWriter } from '../../runtime/cgroups/dbus-wire';
import { cpuQuotaPerSecUSec } from '../../runtime/cgroups/systemd-cgroups';

test('signatures split into complete types', () => {
  assert.deepEqual(splitSignature('ssa(sv)a(sa(sv))'), ['s', 's', 'a(sv)', 'a(sa(sv))']);
  assert.deepEqual(splitSignature('a{sv}u'), ['a{sv}', 'u']);
  assert.throws(() => splitSignature('a(s'), /unclosed/);
  assert.throws(() => splitSignature('z'), /unknown type code/);
});

test('values are aligned to their type from the start of the message', () => {
  const w = new WireWriter();
  w.write('y', 7);
  w.write('t', 1n);
  w.write('s', 'ab');
  const bytes = w.bytes();
  // byte, 7 bytes of padding, 8-byte integer, then length 2, "ab", NUL.
  assert.equal(bytes.length, 1 + 7 + 8 + 4 + 3);
  assert.equal(bytes.readBigUInt64LE(8), 1n);
  assert.equal(bytes.readUInt32LE(16), 2);
  assert.equal(bytes.toString('ascii', 20, 22), 'ab');
  assert.equal(bytes[22], 0);
});

test('an array length excludes the padding before its first struct', () => {
  const w = new WireWriter();
  w.write('a(sv)', [['Delegate', variant('b', true)]]);
  const bytes = w.bytes();
  // length word at 0, padding to 8, then the struct: "Delegate" (4+8+1), signature "b" (1+1+1), pad to 4, boolean.
  assert.equal(bytes.readUInt32LE(0), bytes.length - 8);
  assert.deepEqual(new WireReader(bytes).read('a(sv)'), [['Delegate', { signature: 'b', value: true }]]);
});

test('a StartTransientUnit call survives encoding and decoding whole', () => {
  const body = ['kubepods-pod1.slice', 'replace', [['MemoryMax', variant('t', 268435456n)], ['PIDs', variant('au', [12, 13])]], []];
  const bytes = encodeMessage({
    type: MessageType.MethodCall, flags: 0, serial: 9,
    destination: 'org.freedesktop.systemd1', path: '/org/freedesktop/systemd1',
    interface: 'org.freedesktop.systemd1.Manager', member: 'StartTransientUnit',
    signature: 'ssa(sv)a(sa(sv))', body,
  });
  assert.equal(messageLength(bytes), bytes.length);
  assert.equal(messageLength(bytes.subarray(0, 10)), undefined);
  const message = decodeMessage(bytes);
  assert.equal(message.member, 'StartTransientUnit');
  assert.equal(message.serial, 9);
  assert.equal(message.signature, 'ssa(sv)a(sa(sv))');
  assert.deepEqual(message.body, body.map((v) => v));
});

test('a message that claims more bytes than it holds is refused, not read past', () => {
  const w = new WireWriter();
  w.write('s', 'abc');
  const bytes = Buffer.from(w.bytes());
  bytes.writeUInt32LE(1000, 0);
  assert.throws(() => new WireReader(bytes).read('s'), /truncated/);
  const arr = new WireWriter();
  arr.write('au', [1, 2]);
  const arrBytes = Buffer.from(arr.bytes());
  arrBytes.writeUInt32LE(4096, 0);
  assert.throws(() => new WireReader(arrBytes).read('au'), /past the message/);
});

test('a value of the wrong kind for its signature is an error, not a corrupt message', () => {
  assert.throws(() => new WireWriter().write('s', 5), /expects a string/);
  assert.throws(() => new WireWriter().write('(su)', ['only one']), /needs 2 fields/);
});

test('the CPU quota goes to systemd per second, rounded up to 10 ms steps as runc does', () => {
  assert.equal(cpuQuotaPerSecUSec(50_000, 100_000), 500_000n);
  assert.equal(cpuQuotaPerSecUSec(12_345, 100_000), 130_000n);
  assert.equal(cpuQuotaPerSecUSec(100_000, 100_000), 1_000_000n);
});
