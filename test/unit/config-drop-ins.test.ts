import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ConfigError, dropInDirOf, loadConfig } from '../../shim/config';
import { configCheckEntries, renderConfigCheck } from '../../shim/config-render';

function configDir(files: Record<string, string>): { main: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
  const main = join(dir, 'berth.toml');
  mkdirSync(dropInDirOf(main));
  for (const [name, text] of Object.entries(files)) writeFileSync(name === 'main' ? main : join(dropInDirOf(main), name), text);
  return { main, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a drop-in overrides a key of the main file, and later drop-ins override earlier ones', () => {
  const { main, cleanup } = configDir({
    main: 'log_level = "warn"\n[image]\nmax_concurrent_downloads = 3\n',
    '20-debug.toml': 'log_level = "debug"\n',
    '10-info.toml': 'log_level = "info"\n[metrics]\nport = 9000\n',
  });
  try {
    const loaded = loadConfig({ path: main, explicit: true });
    assert.equal(loaded.config.log_level, 'debug');
    assert.equal(loaded.config.metrics.port, 9000);
    assert.equal(loaded.config.image.max_concurrent_downloads, 3);
    assert.deepEqual(loaded.files.map((f) => f.split('/').pop()), ['berth.toml', '10-info.toml', '20-debug.toml']);
  } finally {
    cleanup();
  }
});

test('tables from drop-ins merge with the main file key by key; lists replace', () => {
  const { main, cleanup } = configDir({
    main: '[image.registries."docker.io"]\nmirrors = ["http://a.example:5000"]\nplain_http = true\n',
    '10-mirror.toml': '[image.registries."docker.io"]\nmirrors = ["http://b.example:5000"]\n[image.registries."quay.io"]\nmirrors = ["http://c.example"]\n',
  });
  try {
    const { config } = loadConfig({ path: main, explicit: true });
    assert.deepEqual(config.image.registries['docker.io'].mirrors, ['http://b.example:5000']);
    assert.equal(config.image.registries['docker.io'].plain_http, true);
    assert.deepEqual(config.image.registries['quay.io'].mirrors, ['http://c.example']);
  } finally {
    cleanup();
  }
});

test('only *.toml regular files count as drop-ins, and a missing main file still reads them', () => {
  const { main, cleanup } = configDir({ '10-a.toml': 'log_level = "error"\n', 'README': 'not toml', '.hidden.toml': 'nope = 1\n', '05-b.toml.bak': 'nope = 1\n' });
  try {
    mkdirSync(join(dropInDirOf(main), '30-dir.toml'));
    const loaded = loadConfig({ path: main, explicit: false });
    assert.equal(loaded.config.log_level, 'error');
    assert.equal(loaded.files.length, 1);
  } finally {
    cleanup();
  }
});

test('an unknown key in a drop-in is refused naming that file and the dotted key', () => {
  const { main, cleanup } = configDir({ main: 'log_level = "info"\n', '50-typo.toml': '[image]\nmax_downloads = 3\n' });
  try {
    assert.throws(() => loadConfig({ path: main, explicit: true }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /50-typo\.toml: unknown key "image\.max_downloads"/);
      return true;
    });
  } finally {
    cleanup();
  }
});

test('a bad value or broken TOML in a drop-in names that file', () => {
  const bad = configDir({ '10-bad.toml': '[metrics]\nport = 70000\n' });
  const broken = configDir({ '10-broken.toml': 'root = \n' });
  try {
    assert.throws(() => loadConfig({ path: bad.main, explicit: false }), /10-bad\.toml: metrics\.port: expected an integer from 0 to 65535/);
    assert.throws(() => loadConfig({ path: broken.main, explicit: false }), /10-broken\.toml is not valid TOML/);
  } finally {
    bad.cleanup();
    broken.cleanup();
  }
});

test('config check shows which file set each key', () => {
  const { main, cleanup } = configDir({ main: 'log_level = "warn"\n', '10-mirrors.toml': '[image.registries."docker.io"]\nmirrors = ["http://127.0.0.1:5000"]\n' });
  try {
    const loaded = loadConfig({ path: main, explicit: true, overrides: { 'metrics.port': 0 } });
    const bySource = new Map(configCheckEntries(loaded).map((e) => [e.key, e.source]));
    assert.equal(bySource.get('log_level'), main);
    assert.equal(bySource.get('image.registries."docker.io".mirrors'), join(dropInDirOf(main), '10-mirrors.toml'));
    assert.equal(bySource.get('image.registries."docker.io".plain_http'), 'default');
    assert.equal(bySource.get('metrics.port'), 'command line');
    assert.equal(bySource.get('root'), 'default');
    const text = renderConfigCheck(loaded);
    assert.match(text, /^log_level = "warn" +# .*berth\.toml$/m);
    assert.match(text, /^image\.registries\."docker\.io"\.mirrors = \["http:\/\/127\.0\.0\.1:5000"\] +# .*10-mirrors\.toml$/m);
  } finally {
    cleanup();
  }
});

test('image.pull_timeout_seconds still works as a deprecated name of image.pull_progress_timeout_seconds, with a warning naming the file', () => {
  const { main, cleanup } = configDir({ main: '[image]\npull_timeout_seconds = 42\n' });
  try {
    const loaded = loadConfig({ path: main, explicit: true });
    assert.equal(loaded.config.image.pull_progress_timeout_seconds, 42);
    assert.equal(loaded.warnings.length, 1);
    assert.match(loaded.warnings[0], /berth\.toml: image\.pull_timeout_seconds is deprecated; call it image\.pull_progress_timeout_seconds/);
    assert.equal(loaded.origins.get('image.pull_progress_timeout_seconds'), main);
  } finally {
    cleanup();
  }
});

test('setting both the deprecated and the new name in one file is refused', () => {
  const { main, cleanup } = configDir({ main: '[image]\npull_timeout_seconds = 42\npull_progress_timeout_seconds = 60\n' });
  try {
    assert.throws(() => loadConfig({ path: main, explicit: true }), /image\.pull_timeout_seconds: deprecated name of image\.pull_progress_timeout_seconds, which is set too/);
  } finally {
    cleanup();
  }
});

test('a cross-key error names the file that set the key', () => {
  const { main, cleanup } = configDir({ '10-kata.toml': '[oci]\ndefault_runtime = "kata"\n' });
  try {
    assert.throws(() => loadConfig({ path: main, explicit: false }), /10-kata\.toml: oci\.default_runtime: "kata" is not one of oci\.runtimes/);
  } finally {
    cleanup();
  }
});

test('registry credentials are checked and shown REDACTED by config check', () => {
  const { main, cleanup } = configDir({ main: '[image.registries."r.io"]\nusername = "u"\npassword = "hunter2"\n', '10-auth.toml': '[image.registries."q.io"]\nauth = "dTpw"\n' });
  const bad = configDir({ main: '[image.registries."r.io"]\nauth = "not-base64-user-pass"\n' });
  try {
    const loaded = loadConfig({ path: main, explicit: true });
    assert.equal(loaded.config.image.registries['r.io'].password, 'hunter2');
    const text = renderConfigCheck(loaded);
    assert.ok(!text.includes('hunter2') && !text.includes('dTpw'));
    assert.match(text, /^image\.registries\."r\.io"\.password = "REDACTED"/m);
    assert.match(text, /^image\.registries\."r\.io"\.identity_token = ""/m);
    assert.throws(() => loadConfig({ path: bad.main, explicit: true }), /image\.registries\."r\.io"\.auth: must be base64 of "user:password"/);
  } finally {
    cleanup();
    bad.cleanup();
  }
});
