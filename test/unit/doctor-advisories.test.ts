import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFixed, looksLikeDistributionBuild, openAdvisories, RUNC_ADVISORIES } from '../../runtime/host/doctor/runtime-advisories';
import { kubeletCgroupDriver } from '../../runtime/host/doctor/cgroup-checks';

const ids = (binary: string, version: string): string[] => openAdvisories(binary, version).flatMap((a) => a.ids);

test('runc releases are judged against the fix of their own series', () => {
  assert.deepEqual(ids('runc', '1.1.11'), ['CVE-2024-21626', 'CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881', 'CVE-2026-41579']);
  // 1.1.x never got the 2025 fixes.
  assert.deepEqual(ids('runc', '1.1.15'), ['CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881', 'CVE-2026-41579']);
  assert.deepEqual(ids('runc', '1.2.8'), ['CVE-2026-41579']);
  assert.deepEqual(ids('runc', '1.3.2'), ['CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881', 'CVE-2026-41579']);
  assert.deepEqual(ids('runc', '1.4.0-rc.3'), ['CVE-2026-41579']);
  assert.deepEqual(ids('runc', '1.3.6'), []);
  assert.deepEqual(ids('runc', '1.5.0'), []);
  assert.equal(isFixed('1.4.0-rc.2', RUNC_ADVISORIES[1]), false);
});

test('the krun advisory applies to crun only when it runs as krun', () => {
  assert.deepEqual(ids('crun', '1.8.1'), []);
  assert.deepEqual(ids('krun', '1.8.1'), ['CVE-2025-24965']);
  assert.deepEqual(ids('crun', '1.4.3'), ['CVE-2022-27650']);
});

test('distribution builds are recognised from their version text', () => {
  assert.equal(looksLikeDistributionBuild('runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1'), true);
  assert.equal(looksLikeDistributionBuild('runc version 1.1.11\ncommit: v1.1.11-0-g4bccb38c'), false);
});

test('the kubelet\'s cgroup driver is read from its config, cgroupfs when unset', () => {
  assert.equal(kubeletCgroupDriver('kind: KubeletConfiguration\ncgroupDriver: systemd\n'), 'systemd');
  assert.equal(kubeletCgroupDriver('cgroupDriver: "cgroupfs" # set by kubeadm\n'), 'cgroupfs');
  assert.equal(kubeletCgroupDriver('kind: KubeletConfiguration\n'), 'cgroupfs');
  assert.equal(kubeletCgroupDriver('nested:\n  cgroupDriver: systemd\n'), 'cgroupfs');
});
