import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyLiveConfig, diffConfigs, reloadConfig } from '../../shim/config-reload';
import { buildConfig, ConfigError } from '../../shim/config';
import { createLogger, LogOutput } from '../../shim/logger';

test('the diff marks log level, registries, CNI dirs and the token TTL live, anything else not', () => {
  const running = buildConfig('');
  const next = buildConfig('log_level = "debug"\n[image.registries."docker.io"]\nmirrors = ["http://127.0.0.1:5000"]\n[cni]\nbin_dirs = ["/x"]\n[streaming]\ntoken_ttl_seconds = 5\n[metrics]\nport = 1\n');
  const changes = diffConfigs(running, next);
  const registryKeys = ['auth', 'ca_file', 'fallback_to_upstream', 'identity_token', 'insecure_skip_verify', 'mirrors', 'password', 'plain_http', 'username'];
  assert.deepEqual(changes.filter((c) => c.live).map((c) => c.key).sort(), [
    'cni.bin_dirs', ...registryKeys.map((k) => `image.registries."docker.io".${k}`), 'log_level', 'streaming.token_ttl_seconds',
  ]);
  assert.deepEqual(changes.filter((c) => !c.live).map((c) => c.key), ['metrics.port']);
});

test('a changed secret is shown REDACTED in the diff', () => {
  const changes = diffConfigs(buildConfig(''), buildConfig('[image.registries."r.io"]\npassword = "hunter2"\n'));
  assert.deepEqual(changes.find((c) => c.key === 'image.registries."r.io".password'), { key: 'image.registries."r.io".password', from: undefined, to: 'REDACTED', live: true });
});

test('applying live keys updates the running config in place, registries record included', () => {
  const running = buildConfig('[image.registries."old.io"]\nplain_http = true\n');
  const registries = running.image.registries;
  const next = buildConfig('[image.registries."new.io"]\nmirrors = ["http://m:1"]\n[streaming]\ntoken_ttl_seconds = 7\n[metrics]\nport = 1\n');
  const calls: unknown[] = [];
  applyLiveConfig(running, next, { network: { relocate: (l) => void calls.push(l) }, streaming: { setTokenTtlSeconds: (s) => void calls.push(s) } });
  assert.equal(running.image.registries, registries, 'the same record the registry client holds');
  assert.deepEqual(Object.keys(registries), ['new.io']);
  assert.equal(running.streaming.token_ttl_seconds, 7);
  assert.equal(running.metrics.port, 9477, 'a restart-only key keeps its running value');
  assert.deepEqual(calls, [{ confDir: '/etc/cni/net.d', binDirs: ['/opt/cni/bin', '/usr/lib/cni'] }, 7]);
});

test('a reload whose files do not load changes nothing and logs the error', () => {
  const running = buildConfig('log_level = "warn"\n');
  const lines: string[] = [];
  const output = new LogOutput('json', { write: (s: string) => void lines.push(s) }, false);
  const log = createLogger('warn', output);
  const outcome = reloadConfig({
    source: { path: '/etc/berth/berth.toml', explicit: true }, running, log, logOutput: output,
    applyLive: () => assert.fail('nothing is applied'),
    load: () => {
      throw new ConfigError('config: /etc/berth/berth.toml is not valid TOML: x');
    },
  });
  assert.match(outcome.error ?? '', /not valid TOML/);
  assert.equal(running.log_level, 'warn');
  assert.match(lines.join(''), /"level":"error".*config reload failed, berthd keeps the running config/);
});
