// Configuration files on a running berthd: a drop-in overrides the main file,
// SIGHUP applies what can change live (log level, registry mirrors), names what
// needs a restart, and a broken file leaves the running config in place.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { freePort, startRegistry, type TestRegistry } from '../support/registry';

describe('config drop-ins and SIGHUP reload', () => {
  let registry: TestRegistry;
  let locked: TestRegistry;
  let berthd: BerthdProcess;
  let dropIns: string;
  let mainText: string;

  before(async () => {
    registry = await startRegistry();
    await pushBusyboxImage(registry, 'reload/busybox:v1');
    locked = await startRegistry({ auth: 'basic' });
    await pushBusyboxImage(locked, 'reload/locked:v1');
    const closedPort = await freePort();
    berthd = new BerthdProcess({
      topLevel: { log_level: 'info' },
      extraToml: [
        '[streaming]', 'token_ttl_seconds = 60',
        // No DNS here: the image name's registry is only ever reached through its mirror.
        '[image.registries."mirror.test"]', `mirrors = ["http://127.0.0.1:${closedPort}"]`, 'fallback_to_upstream = false',
      ].join('\n'),
    });
    dropIns = `${berthd.configPath}.d`;
    mkdirSync(dropIns);
    writeFileSync(join(dropIns, '50-streaming.toml'), '[streaming]\ntoken_ttl_seconds = 30\n');
    mainText = readFileSync(berthd.configPath, 'utf8');
    await berthd.start();
  });
  after(async () => {
    await berthd?.cleanup();
    await registry?.stop();
    await locked?.stop();
  });

  async function runningConfig(): Promise<{ log_level: string; streaming: { token_ttl_seconds: number }; grpc: { max_recv_message_bytes: number } }> {
    const s = await berthd.client.call('Status', { verbose: true });
    return JSON.parse(s.info.config);
  }

  test('a drop-in overrides a key of the main file', async () => {
    assert.match(mainText, /token_ttl_seconds = 60/);
    assert.equal((await runningConfig()).streaming.token_ttl_seconds, 30);
  });

  test('SIGHUP applies a new log level', async () => {
    await berthd.client.call('Version', { version: '0.1.0' });
    assert.doesNotMatch(berthd.logs(), /"level":"debug"/, 'info level logs no debug lines');
    writeFileSync(berthd.configPath, mainText.replace(/log_level = "info"/, 'log_level = "debug"'));
    const from = berthd.logs().length;
    berthd.signal('SIGHUP');
    await berthd.waitForLog(/config reloaded: applied log_level/, 20_000, from);
    await berthd.client.call('Version', { version: '0.1.0' });
    await berthd.waitForLog(/"level":"debug"[^\n]*"rpc":"Version"/, 20_000, from);
    assert.equal((await runningConfig()).log_level, 'debug');
  });

  test('SIGHUP applies a changed registry mirror', async () => {
    const image = 'mirror.test/reload/busybox:v1';
    await assert.rejects(berthd.client.call('PullImage', { image: { image } }), 'the configured mirror does not answer');
    writeFileSync(join(dropIns, '60-mirror.toml'), `[image.registries."mirror.test"]\nmirrors = ["${registry.url}"]\n`);
    const from = berthd.logs().length;
    berthd.signal('SIGHUP');
    await berthd.waitForLog(/config reloaded: applied image\.registries\.\\?"mirror\.test\\?"\.mirrors/, 20_000, from);
    const pulled = await berthd.client.call('PullImage', { image: { image } });
    assert.match(pulled.image_ref, /^sha256:/);
  });

  test('SIGHUP applies registry credentials from the config, which Status never shows', async () => {
    const image = `${locked.host}/reload/locked:v1`;
    await assert.rejects(berthd.client.call('PullImage', { image: { image } }), /requires credentials and none were given/);
    const { username, password } = locked.credentials!;
    writeFileSync(join(dropIns, '65-auth.toml'), `[image.registries."${locked.host}"]\nusername = "${username}"\npassword = "${password}"\n`);
    const from = berthd.logs().length;
    berthd.signal('SIGHUP');
    await berthd.waitForLog(/config reloaded: applied [^\n]*password/, 20_000, from);
    const pulled = await berthd.client.call('PullImage', { image: { image } });
    assert.match(pulled.image_ref, /^sha256:/);
    const s = await berthd.client.call('Status', { verbose: true });
    assert.ok(!s.info.config.includes(password), 'the password is not in Status');
    assert.match(s.info.config, /"password":"REDACTED"/);
    assert.ok(!berthd.logs().includes(password), 'nor in the log');
  });

  test('SIGHUP names the changed keys that need a restart and keeps their running value', async () => {
    writeFileSync(join(dropIns, '70-grpc.toml'), '[grpc]\nmax_recv_message_bytes = 8192\n');
    const from = berthd.logs().length;
    berthd.signal('SIGHUP');
    await berthd.waitForLog(/config reload: grpc\.max_recv_message_bytes changed but takes effect only when berthd restarts/, 20_000, from);
    assert.equal((await runningConfig()).grpc.max_recv_message_bytes, 16 * 1024 * 1024);
  });

  test('SIGHUP with a broken file keeps the running config and says why', async () => {
    writeFileSync(berthd.configPath, `${mainText.replace(/log_level = "info"/, 'log_level = "error"')}\nroot = \n`);
    const from = berthd.logs().length;
    berthd.signal('SIGHUP');
    const line = await berthd.waitForLog(/config reload failed, berthd keeps the running config: [^\n]*/, 20_000, from);
    assert.ok(line.includes(berthd.configPath), line);
    assert.match(line, /is not valid TOML/);
    await berthd.client.call('Version', { version: '0.1.0' });
    const config = await runningConfig();
    assert.equal(config.log_level, 'debug');
    assert.equal(config.streaming.token_ttl_seconds, 30);
  });
});
