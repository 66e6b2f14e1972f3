// berthd under a Type=notify unit: READY=1 arrives on the notify socket once
// the CRI socket serves, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 at
// stop. The test plays systemd with a datagram socket of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadNative } from '../../native';
import { BerthdProcess } from '../support/berthd-process';
import { CriClient } from '../support/cri-client';

async function next(fd: number): Promise<Record<string, string>> {
  const message = await loadNative().notifyReceive(fd, 30_000);
  assert.ok(message !== null, 'a notification arrived');
  return Object.fromEntries(message.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

test('READY=1 arrives on an abstract notify socket once the CRI socket serves; RELOADING=1 and STOPPING=1 follow', async () => {
  const name = `@berth-test-notify-${randomBytes(6).toString('hex')}`;
  const native = loadNative();
  const fd = native.notifyListen(name);
  const berthd = new BerthdProcess({ env: { NOTIFY_SOCKET: name } });
  try {
    const started = berthd.start();
    const ready = await next(fd);
    assert.equal(ready.READY, '1');
    assert.equal(ready.MAINPID, String(berthd.pid));
    assert.match(ready.STATUS, /serving CRI v1/);
    // Serving already, without a retry.
    const client = new CriClient(berthd.socket);
    try {
      const v = await client.call('Version', { version: '0.1.0' }, { timeoutMs: 5000 });
      assert.equal(v.runtime_name, 'berth');
    } finally {
      client.close();
    }
    await started;

    berthd.signal('SIGHUP');
    const reloading = await next(fd);
    assert.equal(reloading.RELOADING, '1');
    assert.match(reloading.MONOTONIC_USEC, /^\d+$/);
    assert.equal((await next(fd)).READY, '1');

    const stopped = berthd.stop();
    assert.equal((await next(fd)).STOPPING, '1');
    assert.equal(await stopped, 0);
  } finally {
    native.closeFd(fd);
    await berthd.cleanup();
  }
});

test('READY=1 arrives on a notify socket given as a path', async () => {
  const berthd = new BerthdProcess();
  const path = join(berthd.dir, 'notify.sock');
  const native = loadNative();
  const fd = native.notifyListen(path);
  const withEnv = new BerthdProcess({ env: { NOTIFY_SOCKET: path } });
  try {
    const started = withEnv.start();
    assert.equal((await next(fd)).READY, '1');
    await started;
  } finally {
    native.closeFd(fd);
    await withEnv.cleanup();
    await berthd.cleanup();
  }
});
