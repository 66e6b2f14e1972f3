// scripts/install.sh into temporary roots: what it installs, that the installed
// berthd runs (version, config check, and serving CRI from the installed copy),
// that a second run keeps the operator's configuration, and DESTDIR staging.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startBerthd } from '../support/berthd-process';

const INSTALL = join(REPO_ROOT, 'scripts', 'install.sh');

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): { stdout: string; stderr: string } {
  const r = spawnSync(file, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240_000 });
  assert.equal(r.status, 0, `${file} ${args.join(' ')} exited ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Installs from this tree's build (the suite has just built it) into paths under root. */
function installInto(root: string, extra: string[] = []): void {
  run('bash', [
    INSTALL,
    '--prefix', join(root, 'usr'),
    '--sysconfdir', join(root, 'etc'),
    '--unitdir', join(root, 'etc', 'systemd', 'system'),
    '--cachedir', join(root, 'var', 'cache', 'berth'),
    '--skip-packages', '--skip-build', '--no-enable',
    ...extra,
  ]);
}

describe('scripts/install.sh into a temporary prefix', () => {
  let root: string;
  let berthd: string;
  before(() => {
    root = mkdtempSync('/tmp/berth-install-');
    berthd = join(root, 'usr', 'bin', 'berthd');
    installInto(root, ['--cgroup-driver', 'systemd']);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('the installed berthd prints its version', () => {
    assert.match(run(berthd, ['version']).stdout, /^berthd \d+\.\d+\.\d+/);
  });

  test('the installed berthd checks the installed berth.toml, which carries the chosen cgroup driver', () => {
    const toml = join(root, 'etc', 'berth', 'berth.toml');
    // config check prints each effective key with the file that set it.
    assert.match(run(berthd, ['config', 'check', toml]).stdout, new RegExp(`^cgroup\\.driver = "systemd" +# ${toml}$`, 'm'));
  });

  test('the unit names the installed launcher and no placeholder is left', () => {
    const unit = readFileSync(join(root, 'etc', 'systemd', 'system', 'berthd.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${berthd}$`, 'm'));
    assert.doesNotMatch(unit, /@[A-Z]+@/);
    assert.match(unit, /^WantedBy=multi-user\.target$/m);
  });

  test('crictl.yaml points crictl at berth', () => {
    const crictl = readFileSync(join(root, 'etc', 'crictl.yaml'), 'utf8');
    assert.match(crictl, /^runtime-endpoint: unix:\/\/\/run\/berth\/berth\.sock$/m);
    assert.match(crictl, /^image-endpoint: unix:\/\/\/run\/berth\/berth\.sock$/m);
  });

  test('only production npm packages are installed', () => {
    const modules = join(root, 'usr', 'lib', 'berth', 'node_modules');
    assert.ok(existsSync(join(modules, 'better-sqlite3', 'package.json')));
    assert.ok(existsSync(join(modules, '@grpc', 'grpc-js', 'package.json')));
    assert.ok(!existsSync(join(modules, 'typescript')), 'typescript is a devDependency');
    assert.ok(!existsSync(join(modules, 'node-gyp')), 'node-gyp is a devDependency');
    assert.ok(!existsSync(join(root, 'usr', 'lib', 'berth', 'dist', 'test')), 'tests are not installed');
  });

  test('the installed copy serves CRI (native addon, proto and SQLite load from the prefix)', async () => {
    const daemon = await startBerthd({ command: [berthd] });
    try {
      const version = await daemon.client.call('Version', { version: '0.1.0' });
      assert.equal(version.runtime_name, 'berth');
      const images = await daemon.client.call('ListImages', {});
      assert.deepEqual(images.images, []);
    } finally {
      await daemon.cleanup();
    }
  });

  test('the installed berthd runs its bundle from the startup snapshot and keeps V8\'s code cache in the cache dir', async () => {
    const daemon = await startBerthd({ command: [berthd], topLevel: { log_format: 'json' } });
    try {
      const line = await daemon.waitForLog(/\{[^\n]*"msg":"berthd serving CRI v1"[^\n]*\}/);
      const { start } = JSON.parse(line) as { start: { bundle: string; codeCache: string; snapshot: string } };
      assert.equal(start.bundle, 'used');
      // The build's startup snapshot, installed with its modification time (the launcher's test of the Node binary).
      assert.equal(start.snapshot, 'used');
      // An earlier test's berthd may have written it already.
      if (start.codeCache !== 'used') await daemon.waitForLog(/code cache written for the next start/);
    } finally {
      await daemon.cleanup();
    }
    assert.ok(existsSync(join(root, 'var', 'cache', 'berth', 'berthd.code-cache')));
    assert.ok(!existsSync(join(root, 'usr', 'lib', 'berth', 'dist', 'shim', 'berthd.bundle.cache')), 'the build\'s own cache is not installed');
  });

  test('a second install replaces berth files and keeps the operator configuration', () => {
    const toml = join(root, 'etc', 'berth', 'berth.toml');
    const crictl = join(root, 'etc', 'crictl.yaml');
    writeFileSync(toml, 'log_level = "debug"\n');
    writeFileSync(crictl, 'runtime-endpoint: unix:///run/elsewhere.sock\n');
    const stray = join(root, 'usr', 'lib', 'berth', 'dist', 'stray.js');
    writeFileSync(stray, '');
    installInto(root);
    assert.equal(readFileSync(toml, 'utf8'), 'log_level = "debug"\n');
    assert.equal(readFileSync(crictl, 'utf8'), 'runtime-endpoint: unix:///run/elsewhere.sock\n');
    assert.ok(!existsSync(stray), 'the old installation is replaced whole');
    assert.match(run(berthd, ['version']).stdout, /^berthd /);
    assert.match(run(berthd, ['config', 'check', toml]).stdout, new RegExp(`^log_level = "debug" +# ${toml}$`, 'm'));
  });
});

describe('scripts/install.sh with DESTDIR', () => {
  let stage: string;
  before(() => {
    stage = mkdtempSync('/tmp/berth-destdir-');
    run('bash', [INSTALL, '--skip-packages', '--skip-build'], { DESTDIR: stage });
  });
  after(() => rmSync(stage, { recursive: true, force: true }));

  test('files land under DESTDIR and name the final paths', () => {
    const unit = readFileSync(join(stage, 'etc', 'systemd', 'system', 'berthd.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/berthd$/m);
    const launcher = readFileSync(join(stage, 'usr', 'local', 'bin', 'berthd'), 'utf8');
    assert.match(launcher, /\/usr\/local\/lib\/berth\/dist\/shim\/bundle\/bundle-runner\.js/);
    assert.match(launcher, /BERTH_CODE_CACHE=\/var\/cache\/berth\/berthd\.code-cache/);
    assert.match(launcher, /blob=\/usr\/local\/lib\/berth\/dist\/shim\/berthd\.snapshot /);
    assert.ok(!launcher.includes(stage), 'the launcher does not name the staging root');
    assert.ok(existsSync(join(stage, 'etc', 'berth', 'berth.toml')));
  });

  test('the staged copy runs from where it lies (berth finds its files relative to itself)', () => {
    const shim = join(stage, 'usr', 'local', 'lib', 'berth', 'dist', 'shim');
    assert.match(run(process.execPath, [join(shim, 'berthd.js'), 'version']).stdout, /^berthd /);
    // The bundle gives each module its path under the staged copy, not the build's.
    assert.match(run(process.execPath, [join(shim, 'bundle', 'bundle-runner.js'), 'version']).stdout, /^berthd /);
  });
});
