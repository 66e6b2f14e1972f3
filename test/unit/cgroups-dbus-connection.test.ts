// berth's D-Bus client against a peer on a unix socket in the test: the order of
// its authentication (what systemd 252's server needs, see dbus-connection.ts)
// and the deadline on every call. The exchange with a real systemd is in
// test/integration/systemd-cgroups.test.ts and systemd-containers.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DbusConnection, DbusError } from '../../runtime/cgroups/dbus-connection';
import { decodeMessage, encodeMessage, messageLength, MessageType, type DbusMessage } from '../../runtime/cgroups/dbus-wire';

interface Peer {
  path: string;
  /** Everything the client sent before the peer answered OK. */
  beforeOk: Promise<string>;
  /** Method calls received after authentication. */
  calls: DbusMessage[];
  close(): Promise<void>;
}

/**
 * A direct peer that answers OK only once it holds both AUTH and BEGIN, then
 * replies to every call whose member is not "Silent".
 */
async function startPeer(): Promise<Peer> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-dbus-'));
  const path = join(dir, 'peer.sock');
  const calls: DbusMessage[] = [];
  const sockets = new Set<Socket>();
  let resolveBeforeOk!: (text: string) => void;
  const beforeOk = new Promise<string>((r) => (resolveBeforeOk = r));
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    let auth = '';
    let inbox = Buffer.alloc(0);
    let running = false;
    socket.on('data', (chunk: Buffer) => {
      if (!running) {
        auth += chunk.toString('latin1');
        if (!auth.includes('BEGIN\r\n')) return;
        resolveBeforeOk(auth);
        running = true;
        socket.write('OK 0123456789abcdef0123456789abcdef\r\n');
        chunk = Buffer.from(auth.slice(auth.indexOf('BEGIN\r\n') + 7), 'latin1');
      }
      inbox = Buffer.concat([inbox, chunk]);
      for (;;) {
        const length = messageLength(inbox);
        if (length === undefined || inbox.length < length) return;
        const message = decodeMessage(inbox.subarray(0, length));
        inbox = inbox.subarray(length);
        calls.push(message);
        if (message.member === 'Silent') continue;
        socket.write(encodeMessage({ type: MessageType.MethodReturn, flags: 0, serial: calls.length, replySerial: message.serial, signature: 's', body: [`${message.member} done`] }));
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    beforeOk,
    calls,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('authentication sends BEGIN with AUTH, before the server says OK, so no call shares a read with BEGIN', async () => {
  const peer = await startPeer();
  try {
    const connection = await DbusConnection.connect({ path: peer.path, bus: false, timeoutMs: 5000 });
    const sent = await peer.beforeOk;
    assert.match(sent, /^\0AUTH EXTERNAL [0-9a-f]+\r\nBEGIN\r\n$/);
    const [reply] = await connection.call({ path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager', member: 'Subscribe' });
    assert.equal(reply, 'Subscribe done');
    connection.close();
  } finally {
    await peer.close();
  }
});

test('a call that gets no reply fails with NoReply naming the method, and the connection serves the next call', async () => {
  const peer = await startPeer();
  try {
    const connection = await DbusConnection.connect({ path: peer.path, bus: false, callTimeoutMs: 200 });
    await assert.rejects(
      connection.call({ path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager', member: 'Silent' }),
      (err: unknown) => err instanceof DbusError && err.dbusName === 'org.freedesktop.DBus.Error.NoReply' && /Manager\.Silent on .*peer\.sock: no reply within 200 ms/.test(err.message),
    );
    const [reply] = await connection.call({ path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager', member: 'GetUnit' }, 5000);
    assert.equal(reply, 'GetUnit done');
    connection.close();
  } finally {
    await peer.close();
  }
});
