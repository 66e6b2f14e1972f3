// deploy/berthd.service under a real systemd (Debian's, PID 1 of a
// systemd-nspawn container with the host's /usr and this checkout bound in; see
// test/support/systemd-container.ts): `systemctl start` returns once berthd's
// READY=1 arrived (Type=notify), so the CRI socket answers at once;
// `systemctl reload` applies a changed log level; `systemctl stop` stops it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTHD_ENTRY, REPO_ROOT } from '../support/berthd-process';
import { CriClient } from '../support/cri-client';
import { bootSystemd, systemdUnavailableReason, type BootedSystemd } from '../support/systemd-container';

function berthToml(dir: string, logLevel: string): string {
  return [
    `root = "${dir}/root"`, `state = "${dir}/state"`, `socket = "${dir}/berth.sock"`, `log_level = "${logLevel}"`,
    '[metrics]', 'port = 0', '[streaming]', 'port = 0',
    '[cni]', `conf_dir = "${dir}/cni"`, `cache_dir = "${dir}/cni-cache"`, 'write_default_conflist = false',
    '[sandbox]', `namespace_dir = "${dir}/ns"`,
    '[oci.runtimes.runc]', `root = "${dir}/state/runc"`,
    '[oci.runtimes.crun]', `root = "${dir}/state/crun"`,
    '',
  ].join('\n');
}

describe('berthd.service under a real systemd', { skip: systemdUnavailableReason() }, () => {
  let dir: string;
  let systemd: BootedSystemd;
  let client: CriClient;
  const systemctl = (...args: string[]): string => systemd.exec(['systemctl', ...args]).trim();

  before(async () => {
    dir = mkdtempSync('/tmp/berth-sdunit-');
    writeFileSync(join(dir, 'berth.toml'), berthToml(dir, 'info'));
    // The launcher install.sh writes, pointed at this checkout and the test's config.
    writeFileSync(join(dir, 'berthd'), `#!/bin/sh\nexec ${process.execPath} ${BERTHD_ENTRY} --config ${dir}/berth.toml "$@"\n`);
    chmodSync(join(dir, 'berthd'), 0o755);
    const unit = readFileSync(join(REPO_ROOT, 'deploy', 'berthd.service'), 'utf8').replaceAll('@BINDIR@', dir).replaceAll('@LIBDIR@', REPO_ROOT);
    writeFileSync(join(dir, 'berthd.service'), unit);
    const modules = realpathSync(join(REPO_ROOT, 'node_modules'));
    const binds = ['--bind-ro=/usr', `--bind-ro=${REPO_ROOT}`, `--bind=${dir}`];
    if (!modules.startsWith(`${REPO_ROOT}/`)) binds.push(`--bind-ro=${modules}`);
    systemd = await bootSystemd({ nspawnArgs: binds });
    systemctl('link', join(dir, 'berthd.service'));
    systemctl('daemon-reload');
    client = new CriClient(join(dir, 'berth.sock'));
  });
  after(async () => {
    client?.close();
    try {
      systemctl('stop', 'berthd.service');
    } catch {
      // not running
    }
    await systemd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const journal = (): string => {
    try {
      return systemd.exec(['journalctl', '-u', 'berthd.service', '--no-pager', '-o', 'cat']).slice(-4000);
    } catch (err) {
      return (err as Error).message;
    }
  };

  test('systemctl start returns once berthd serves: the socket answers at once', async () => {
    try {
      systemctl('start', 'berthd.service');
    } catch (err) {
      assert.fail(`${(err as Error).message}\n${systemctl('status', 'berthd.service', '--no-pager').slice(0, 2000)}\n${journal()}`);
    }
    assert.equal(systemctl('is-active', 'berthd.service'), 'active');
    const v = await client.call('Version', { version: '0.1.0' }, { timeoutMs: 5000 });
    assert.equal(v.runtime_name, 'berth');
    assert.equal(systemctl('show', '-p', 'Type', '--value', 'berthd.service'), 'notify');
    const mainPid = systemctl('show', '-p', 'MainPID', '--value', 'berthd.service');
    assert.notEqual(mainPid, '0');
    // The OOM killer takes pods before the node's runtime (systemd applies it where it holds CAP_SYS_RESOURCE, which this host's root lacks).
    assert.equal(systemctl('show', '-p', 'OOMScoreAdjust', '--value', 'berthd.service'), '-999');
    assert.equal(systemctl('show', '-p', 'KillMode', '--value', 'berthd.service'), 'process');
    assert.equal(systemctl('show', '-p', 'Delegate', '--value', 'berthd.service'), 'yes');
  });

  test('systemctl reload applies a changed log level', async () => {
    writeFileSync(join(dir, 'berth.toml'), berthToml(dir, 'debug'));
    systemctl('reload', 'berthd.service');
    let level = '';
    for (let i = 0; i < 100 && level !== 'debug'; i++) {
      const s = await client.call('Status', { verbose: true });
      level = (JSON.parse(s.info.config) as { log_level: string }).log_level;
      if (level !== 'debug') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(level, 'debug', journal());
    assert.equal(systemctl('is-active', 'berthd.service'), 'active');
  });

  test('systemctl stop stops berthd cleanly', async () => {
    // A connected client would hold the graceful shutdown to its deadline; systemctl runs asynchronously
    // so this process's event loop can close the connection meanwhile.
    client.close();
    await promisify(execFile)('nsenter', ['-t', String(systemd.pid), '-a', 'systemctl', 'stop', 'berthd.service'], { timeout: 60_000 });
    assert.equal(systemctl('show', '-p', 'ActiveState', '--value', 'berthd.service'), 'inactive');
    assert.equal(systemctl('show', '-p', 'ExecMainStatus', '--value', 'berthd.service'), '0');
    assert.match(journal(), /berthd stopped/);
  });
});
