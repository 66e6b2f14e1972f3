import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { RuntimeReadinessProbe } from '../../runtime/host/runtime-readiness';
import { compareVersions, versionOf } from '../../runtime/host/binaries';
import { defaultConfig } from '../../shim/config';

function fakeBinary(path: string, versionLine: string, exitCode = 0): void {
  writeFileSync(path, `#!/bin/sh\necho '${versionLine}'\nexit ${exitCode}\n`);
  chmodSync(path, 0o755);
}

test('RuntimeReady is false naming conmon when conmon is missing, and true again once it is back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ready-'));
  let now = 0;
  try {
    fakeBinary(join(dir, 'runc'), 'runc version 1.1.12');
    const probe = new RuntimeReadinessProbe({ handler: 'runc', runtimeBinary: join(dir, 'runc'), conmonBinary: join(dir, 'conmon'), ttlMs: 1000, now: () => now });
    const missing = await probe.current();
    assert.equal(missing.ready, false);
    assert.equal(missing.reason, 'ConmonMissing');
    assert.match(missing.message, /conmon not found: .*conmon does not exist/);

    fakeBinary(join(dir, 'conmon'), 'conmon version 2.1.6');
    assert.equal((await probe.current()).ready, false, 'the answer is reused within the TTL');
    now += 1000;
    const back = await probe.current();
    assert.equal(back.ready, true);
    assert.equal(back.reason, '');
    assert.deepEqual(back.checked.map((c) => (c.found && c.usable ? c.version : '')), ['1.1.12', '2.1.6']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a runtime that exists but fails --version makes RuntimeReady false as unusable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ready-'));
  try {
    fakeBinary(join(dir, 'runc'), 'broken', 3);
    fakeBinary(join(dir, 'conmon'), 'conmon version 2.1.6');
    const r = await new RuntimeReadinessProbe({ handler: 'runc', runtimeBinary: join(dir, 'runc'), conmonBinary: join(dir, 'conmon') }).current();
    assert.equal(r.ready, false);
    assert.equal(r.reason, 'OCIRuntimeUnusable');
    assert.match(r.message, /handler "runc" does not run: .*exited with 3/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a replaced binary is asked its version again; an unchanged one is not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ready-'));
  let now = 0;
  try {
    fakeBinary(join(dir, 'runc'), 'runc version 1.1.12');
    fakeBinary(join(dir, 'conmon'), 'conmon version 2.1.6');
    const probe = new RuntimeReadinessProbe({ handler: 'runc', runtimeBinary: join(dir, 'runc'), conmonBinary: join(dir, 'conmon'), ttlMs: 10, now: () => now });
    await probe.current();
    fakeBinary(join(dir, 'runc.new'), 'runc version 1.3.3');
    renameSync(join(dir, 'runc.new'), join(dir, 'runc'));
    now += 10;
    const r = await probe.current();
    assert.deepEqual(r.checked.map((c) => (c.found && c.usable ? c.version : '')), ['1.3.3', '2.1.6']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('versions are read from --version lines and compared numerically, pre-releases first', () => {
  assert.equal(versionOf('runc version 1.1.5+ds1'), '1.1.5+ds1');
  assert.equal(versionOf('Version: 3.17.1'), '3.17.1');
  assert.equal(versionOf('crun version 1.8.1'), '1.8.1');
  assert.ok(compareVersions('1.1.12', '1.1.5') > 0);
  assert.ok(compareVersions('1.1.5+ds1', '1.1.12') < 0);
  assert.ok(compareVersions('1.4.0-rc.3', '1.4.0') < 0);
  assert.ok(compareVersions('1.4.0-rc.10', '1.4.0-rc.3') > 0);
  assert.equal(compareVersions('1.2.8', '1.2.8'), 0);
});

test('conmon given by a bare name and not found at start stays not ready, saying a restart is needed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ready-'));
  try {
    fakeBinary(join(dir, 'runc'), 'runc version 1.1.12');
    const config = defaultConfig();
    config.oci.runtimes.runc.path = join(dir, 'runc');
    config.oci.conmon = 'berth-test-no-such-conmon';
    const r = await RuntimeReadinessProbe.forHost(config, { conmon: { name: 'conmon', missing: 'not in PATH' } }).current();
    assert.equal(r.ready, false);
    assert.equal(r.reason, 'ConmonMissing');
    assert.match(r.message, /was not in PATH when berthd started: install it and restart berthd/);
    const found = await RuntimeReadinessProbe.forHost(config, { conmon: { name: 'conmon', path: '/usr/bin/conmon', version: 'x' } }).current();
    assert.equal(found.checked[1].found && found.checked[1].path, '/usr/bin/conmon');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
