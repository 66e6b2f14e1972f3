// berthd doctor: on this host (through the real CLI), on a fixture root where
// every check finds something wrong, and at berthd's start, where a fatal
// finding stops it with doctor's message.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { loadNative } from '../../native';
import { defaultConfig } from '../../shim/config';
import { type DoctorReport, renderDoctorText, runDoctor } from '../../runtime/host/doctor/doctor';
import { BERTHD_ENTRY, BerthdProcess } from '../support/berthd-process';

describe('berthd doctor on this host', () => {
  test('prints one line per check and exits 0, 1 or 2 as the worst finding says', () => {
    const berthd = new BerthdProcess();
    try {
      const json = spawnSync(process.execPath, [BERTHD_ENTRY, 'doctor', '--json', '--config', berthd.configPath], { encoding: 'utf8' });
      const report = JSON.parse(json.stdout) as DoctorReport;
      assert.equal(json.status, report.exitCode);
      assert.equal(report.exitCode, report.summary.fail > 0 ? 2 : report.summary.warn > 0 ? 1 : 0);
      const byId = new Map(report.results.map((r) => [r.id, r]));
      // Facts of this machine the rest of the suite depends on.
      assert.equal(byId.get('kernel.overlay')?.status, 'ok');
      assert.equal(byId.get('binary.conmon')?.status, 'ok');
      assert.match(byId.get('binary.runtime.runc')?.found ?? '', /^runc \d/);
      assert.equal(byId.get('privileges.sys_admin')?.status, 'ok');
      assert.equal(byId.get('socket')?.status, 'ok', 'no berthd serves this config, so there is no socket');
      for (const r of report.results) if (r.status !== 'ok') assert.ok(r.fix, `${r.id} says how to fix it`);

      const text = spawnSync(process.execPath, [BERTHD_ENTRY, 'doctor', '--config', berthd.configPath], { encoding: 'utf8' });
      assert.equal(text.status, report.exitCode);
      const lines = text.stdout.split('\n').filter((l) => /^(ok|warn|fail) /.test(l));
      assert.equal(lines.length, report.results.length);
      assert.match(text.stdout, /\d+ ok, \d+ warnings?, \d+ failures?/);
    } finally {
      rmSync(berthd.dir, { recursive: true, force: true });
    }
  });
});

function put(root: string, path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
  chmodSync(join(root, path), mode);
}

describe('berthd doctor on a fixture host where every check fails', () => {
  let root: string;
  let socketServer: Server;
  let report: DoctorReport;

  before(async () => {
    root = mkdtempSync('/tmp/berth-test-doctor-');
    put(root, '/proc/self/status', 'Name:\tberthd\nCapEff:\t0000000000000000\n');
    put(root, '/proc/self/oom_score_adj', '0\n');
    put(root, '/proc/filesystems', 'nodev\tsysfs\nnodev\ttmpfs\n\text4\n');
    put(root, '/proc/self/mounts', 'overlay / overlay rw,relatime 0 0\nproc /proc proc rw 0 0\n');
    put(root, '/proc/sys/kernel/osrelease', '5.10.0-28-amd64\n');
    put(root, '/proc/sys/net/ipv4/ip_forward', '0\n');
    put(root, '/proc/swaps', 'Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n');
    put(root, '/proc/sys/user/max_user_namespaces', '0\n');
    put(root, '/sys/module/overlay/parameters/metacopy', 'Y\n');
    put(root, '/var/lib/kubelet/config.yaml', 'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n');
    // An upstream runc from before the CVE-2024-21626 fix; no conmon, crun or criu at all.
    put(root, '/usr/sbin/runc', '#!/bin/sh\necho "runc version 1.1.11"\necho "commit: v1.1.11-0-g4bccb38c"\n', 0o755);
    put(root, '/etc/cni/net.d/10-net.conflist', JSON.stringify({ cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'flannel' }] }));
    // A full disk: a 1 MiB tmpfs at berth's root, filled.
    mkdirSync(join(root, 'var/lib/berth'), { recursive: true });
    loadNative().mount('tmpfs', join(root, 'var/lib/berth'), 'tmpfs', 0, 'size=1m');
    writeFileSync(join(root, 'var/lib/berth/fill'), Buffer.alloc(1024 * 1024 - 16 * 1024));
    // A socket anyone may write to.
    mkdirSync(join(root, 'run/berth'), { recursive: true });
    socketServer = createServer();
    await new Promise<void>((resolve) => socketServer.listen(join(root, 'run/berth/berth.sock'), resolve));
    chmodSync(join(root, 'run/berth/berth.sock'), 0o666);
    report = await runDoctor(defaultConfig(), { hostRoot: root });
  });
  after(async () => {
    await new Promise((resolve) => socketServer?.close(resolve));
    try {
      loadNative().umount2(join(root, 'var/lib/berth'), loadNative().mountFlags.MNT_DETACH);
    } catch {
      // not mounted
    }
    rmSync(root, { recursive: true, force: true });
  });

  test('no check passes, each says what it found and how to fix it, and doctor exits 2', () => {
    const passed = report.results.filter((r) => r.status === 'ok');
    assert.deepEqual(passed, [], renderDoctorText(report));
    for (const r of report.results) {
      assert.ok(r.found.length > 0 && r.fix && r.fix.length > 0, `${r.id}: ${r.found} / ${r.fix}`);
    }
    assert.equal(report.exitCode, 2);
  });

  test('each prerequisite is judged', () => {
    const status = Object.fromEntries(report.results.map((r) => [r.id, r.status]));
    assert.deepEqual(status, {
      'privileges.sys_admin': 'fail',
      'privileges.sys_resource': 'warn',
      'kernel.overlay': 'fail',
      'overlay.backing_fs': 'fail',
      'overlay.lowerdir_plus': 'warn',
      'overlay.parameters': 'warn',
      'kernel.br_netfilter': 'warn',
      'kernel.ip_forward': 'fail',
      'kernel.swap': 'warn',
      'cgroup.mode': 'fail',
      'cgroup.driver': 'fail',
      'binary.conmon': 'fail',
      'binary.runtime.runc': 'fail',
      'binary.runtime.crun': 'warn',
      'cni.plugins': 'fail',
      'disk.space': 'fail',
      'socket': 'fail',
      'kernel.user_namespaces': 'warn',
      'kernel.idmapped_mounts': 'warn',
      'binary.criu': 'warn',
    });
  });

  test('findings name what was found and the exact fix', () => {
    const byId = new Map(report.results.map((r) => [r.id, r]));
    assert.match(byId.get('kernel.ip_forward')!.fix!, /sysctl -w net\.ipv4\.ip_forward=1/);
    assert.match(byId.get('cgroup.driver')!.found, /kubelet uses the systemd driver .* berth uses cgroupfs/);
    assert.match(byId.get('cgroup.driver')!.fix!, /cgroup\.driver = "systemd"/);
    assert.match(byId.get('binary.runtime.runc')!.found, /runc 1\.1\.11 .* predates CVE-2024-21626/);
    assert.match(byId.get('cni.plugins')!.found, /needs flannel/);
    assert.match(byId.get('socket')!.found, /mode 0666: every local user/);
    assert.match(byId.get('disk.space')!.found, /free of 1 MiB at \/var\/lib\/berth/);
    const fatal = report.results.filter((r) => r.fatal).map((r) => r.id).sort();
    assert.deepEqual(fatal, ['cgroup.mode', 'kernel.overlay', 'overlay.backing_fs', 'privileges.sys_admin']);
  });

  test('the CLI reads the same fixture with --host-root and answers JSON', () => {
    put(root, '/etc/berth/berth.toml', '# all defaults\n');
    const out = spawnSync(process.execPath, [BERTHD_ENTRY, 'doctor', '--json', '--host-root', root, '--config', join(root, 'etc/berth/berth.toml')], { encoding: 'utf8' });
    assert.equal(out.status, 2);
    const cli = JSON.parse(out.stdout) as DoctorReport;
    assert.deepEqual(cli.results.map((r) => [r.id, r.status]), report.results.map((r) => [r.id, r.status]));
  });
});

describe('berthd start runs the host checks', () => {
  test('a fatal finding (no CAP_SYS_ADMIN) stops berthd with doctor\'s message', () => {
    const berthd = new BerthdProcess();
    try {
      const out = spawnSync('setpriv', ['--bounding-set', '-sys_admin', process.execPath, BERTHD_ENTRY, '--config', berthd.configPath], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(out.status, 1);
      const logs = out.stdout + out.stderr;
      assert.match(logs, /berthd cannot start: host check failed/);
      assert.match(logs, /fail +privileges\.sys_admin +no CAP_SYS_ADMIN: berthd cannot pin namespaces/);
    } finally {
      rmSync(berthd.dir, { recursive: true, force: true });
    }
  });
});
