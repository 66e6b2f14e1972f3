// OCI runtime versions at berthd's start, with wrappers around this host's
// real runc that report another version: an upstream runc older than the last
// container-escape fix is refused, a distribution build runs with a loud
// warning shown in Status, min_version overrides the advisory table, and the
// runc fast paths (berth releasing exec.fifo itself) run only on tested series.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const REAL_RUNC = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p)) ?? 'runc';

describe('OCI runtime versions', () => {
  const dir = mkdtempSync('/tmp/berth-rtver-');
  let registry: TestRegistry;
  let image = '';

  /** A "runc" that reports `versionLines` and otherwise runs the real runc, logging each subcommand to calls.log. */
  const fakeRunc = (name: string, versionLines: string[]): { path: string; calls: string } => {
    const bin = join(dir, name);
    const calls = join(dir, `${name}.calls`);
    mkdirSync(bin, { recursive: true });
    const script = [
      '#!/bin/sh',
      `if [ "$1" = "--version" ]; then printf '%s\\n' ${versionLines.map((l) => JSON.stringify(l)).join(' ')}; exit 0; fi`,
      `for a in "$@"; do case "$a" in --*) ;; *) echo "$a" >> ${JSON.stringify(calls)}; break;; esac; done`,
      `exec ${REAL_RUNC} "$@"`,
    ].join('\n');
    writeFileSync(join(bin, 'runc'), `${script}\n`);
    chmodSync(join(bin, 'runc'), 0o755);
    return { path: join(bin, 'runc'), calls };
  };

  const berthdWith = (runcPath: string, extra = ''): BerthdProcess =>
    new BerthdProcess({ extraToml: `[oci.runtimes.runc]\npath = ${JSON.stringify(runcPath)}\n${extra}\n` });

  const statusVersions = async (berthd: BerthdProcess) => {
    const st = await berthd.client.call('Status', { verbose: true });
    return JSON.parse(st.info.ociRuntimeVersions) as Record<string, { verdict: string; fastPaths: boolean; openAdvisories: string[]; message: string }>;
  };

  /** Runs one container to its start in a host-network pod, and removes it all again. */
  const runOne = async (berthd: BerthdProcess): Promise<void> => {
    await berthd.client.call('PullImage', { image: { image } } as never);
    const sandboxConfig = podConfig('rtver', {
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE' } }, sysctls: {} },
    } as never);
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    const { container_id } = await berthd.client.call('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name: 'c', attempt: 0 }, image: { image }, command: ['sleep', '600'], linux: {} },
      sandbox_config: sandboxConfig,
    } as never);
    await berthd.client.call('StartContainer', { container_id });
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/rtver:v1')).reference;
  });

  after(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an upstream runc older than the last container-escape fix as the default handler stops berthd with a line saying why', async () => {
    const runc = fakeRunc('old-upstream', ['runc version 1.1.11', 'commit: v1.1.11-0-g4bccb38c', 'spec: 1.0.2-dev']);
    const berthd = berthdWith(runc.path);
    try {
      await assert.rejects(berthd.start(), /berthd exited early/);
      assert.match(berthd.logs(), /berthd cannot start: runtime: runc 1\.1\.11 for handler .{1,3}runc.{1,3} is older than the fix of .*CVE-2024-21626.*CVE-2025-31133.*min_version/);
    } finally {
      await berthd.cleanup();
    }
  });

  test('a distribution build below the minimum runs with a loud warning, and Status verbose says so', async () => {
    const runc = fakeRunc('debian', ['runc version 1.1.5+ds1', 'commit: 1.1.5+ds1-1+deb12u1', 'spec: 1.0.2-dev']);
    const berthd = berthdWith(runc.path);
    try {
      await berthd.start();
      assert.match(berthd.logs(), /runtime version WARNING: runc 1\.1\.5\+ds1 for handler .{1,3}runc.{1,3} is a distribution build older than the fix of/);
      const versions = await statusVersions(berthd);
      assert.equal(versions.runc.verdict, 'warn');
      assert.ok(versions.runc.openAdvisories.includes('CVE-2025-52881'));
      assert.equal(versions.runc.fastPaths, true, '1.1 is a tested series');
      await runOne(berthd);
      assert.doesNotMatch(readFileSync(runc.calls, 'utf8'), /^start$/m, 'berth released exec.fifo itself');
    } finally {
      await berthd.cleanup();
    }
  });

  test('oci.distribution_builds = "refuse" refuses that build too', async () => {
    const runc = fakeRunc('debian-refused', ['runc version 1.1.5+ds1', 'commit: 1.1.5+ds1-1+deb12u1']);
    const berthd = berthdWith(runc.path, '[oci]\ndistribution_builds = "refuse"');
    try {
      await assert.rejects(berthd.start(), /berthd exited early/);
      assert.match(berthd.logs(), /berthd cannot start: runtime: .*1\.1\.5\+ds1.*older than the fix of/);
    } finally {
      await berthd.cleanup();
    }
  });

  test("min_version replaces the advisory table: an old upstream runc at or above it runs", async () => {
    const runc = fakeRunc('pinned', ['runc version 1.1.11', 'commit: v1.1.11-0-g4bccb38c']);
    const berthd = berthdWith(runc.path, 'min_version = "1.1.0"');
    try {
      await berthd.start();
      const versions = await statusVersions(berthd);
      assert.equal(versions.runc.verdict, 'ok');
    } finally {
      await berthd.cleanup();
    }
  });

  test("a runc of an untested series (1.3) is run for every step: berth's fast paths stay off", async () => {
    const runc = fakeRunc('newer', ['runc version 1.3.6', 'commit: v1.3.6-0-gabcdef0']);
    const berthd = berthdWith(runc.path);
    try {
      await berthd.start();
      const versions = await statusVersions(berthd);
      assert.equal(versions.runc.verdict, 'ok');
      assert.equal(versions.runc.fastPaths, false);
      assert.match(berthd.logs(), /runc fast paths off: not a tested series/);
      await runOne(berthd);
      assert.match(readFileSync(runc.calls, 'utf8'), /^start$/m, '`runc start` ran');
    } finally {
      await berthd.cleanup();
    }
  });
});
