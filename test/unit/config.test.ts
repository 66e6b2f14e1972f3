import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig, ConfigError, defaultConfig, parseOverrideValue } from '../../shim/config';
import { renderDefaultConfig } from '../../shim/config-render';

test('defaults are the documented on-disk layout', () => {
  const config = defaultConfig();
  assert.equal(config.socket, '/run/berth/berth.sock');
  assert.equal(config.root, '/var/lib/berth');
  assert.equal(config.oci.default_runtime, 'runc');
  assert.deepEqual(Object.keys(config.oci.runtimes).sort(), ['crun', 'runc']);
  assert.deepEqual(config.cni.bin_dirs, ['/opt/cni/bin', '/usr/lib/cni']);
  assert.equal(config.cgroup.driver, 'cgroupfs');
});

test('the printed default config parses back to the defaults', () => {
  const text = renderDefaultConfig();
  assert.deepEqual(buildConfig(text), defaultConfig());
  // Every key carries a comment line before it.
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (/^[a-z_]+ = /.test(line)) assert.match(lines[i - 1], /^# /, `no comment before "${line}"`);
  });
});

test('file values and overrides are applied, overrides last', () => {
  const config = buildConfig(
    'log_level = "debug"\n[image]\nmax_concurrent_downloads = 8\n[image.registries."localhost:5000"]\nplain_http = true\n',
    { 'image.max_concurrent_downloads': 2, socket: '/tmp/x.sock' },
  );
  assert.equal(config.log_level, 'debug');
  assert.equal(config.image.max_concurrent_downloads, 2);
  assert.equal(config.socket, '/tmp/x.sock');
  assert.equal(config.image.registries['localhost:5000'].plain_http, true);
  assert.deepEqual(config.image.registries['localhost:5000'].mirrors, []);
});

test('an unknown key is refused with its full dotted name', () => {
  assert.throws(() => buildConfig('[image]\nmax_downloads = 3\n'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /unknown key "image\.max_downloads"/);
    return true;
  });
});

test('a bad value names the key and what was wrong', () => {
  assert.throws(() => buildConfig('log_level = "loud"\n'), /log_level: expected one of trace, debug, info, warn, error, fatal, got "loud"/);
  assert.throws(() => buildConfig('[metrics]\nport = 70000\n'), /metrics\.port: expected an integer from 0 to 65535/);
  assert.throws(() => buildConfig('root = "relative/dir"\n'), /root: must be an absolute path/);
  assert.throws(() => buildConfig('[image.registries."r.io"]\nmirrors = ["ftp://x"]\n'), /mirrors: "ftp:\/\/x" must be an http/);
  assert.throws(() => buildConfig('[cgroup]\ndriver = 3\n'), /cgroup\.driver: expected one of cgroupfs, systemd, got 3/);
});

test('invalid TOML is reported as such', () => {
  assert.throws(() => buildConfig('root = \n', {}, '/etc/berth/berth.toml'), /\/etc\/berth\/berth\.toml is not valid TOML/);
});

test('the default runtime must be a configured handler', () => {
  assert.throws(() => buildConfig('[oci]\ndefault_runtime = "kata"\n'), /oci\.default_runtime: "kata" is not one of oci\.runtimes/);
  const config = buildConfig('[oci]\ndefault_runtime = "youki"\n[oci.runtimes.youki]\npath = "/usr/bin/youki"\nroot = "/run/berth/youki"\n');
  assert.equal(config.oci.runtimes.youki.path, '/usr/bin/youki');
});

test('flag values are parsed to the kind their key expects', () => {
  assert.equal(parseOverrideValue('metrics.port', '9000'), 9000);
  assert.equal(parseOverrideValue('metrics.enabled', 'false'), false);
  assert.deepEqual(parseOverrideValue('cni.bin_dirs', '/a,/b'), ['/a', '/b']);
  assert.throws(() => parseOverrideValue('metrics.port', 'x'), /metrics\.port: expected an integer/);
  assert.throws(() => parseOverrideValue('nope.key', '1'), /unknown key "nope\.key"/);
});
