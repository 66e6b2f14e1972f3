// What a crash leaves is undone at the next start: berthd is killed while a
// CNI plugin is still adding a pod; the restarted berthd deletes the
// attachment (from its cache), unpins the namespaces and forgets the pod.
// Also: pod-level resources reach the pod cgroup.
import { testNetwork } from '../support/test-network';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConflist } from '../../cni/default-conflist';
import { mountsUnder, podConfig, removeAllPods, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-sbx-recover', bridge: 'bt-sbx3', subnet: '10.86.4.0/24' });

function ipFiles(name: string): string[] {
  const d = join('/var/lib/cni/networks', name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
}

describe('recovery after a crash', () => {
  let s: SandboxBerthd;
  let binDir: string;
  let slowPid = 0;
  before(async () => {
    binDir = mkdtempSync('/tmp/berth-sbx-slowbin-');
    // ADD waits (bounded) while the "slow" flag exists, so the test can kill berthd mid-ADD; DEL logs its container id.
    writeFileSync(
      join(binDir, 'bt-slow'),
      [
        '#!/bin/sh',
        'input=$(cat)',
        `dir=${binDir}`,
        'if [ "$CNI_COMMAND" = ADD ]; then',
        '  echo $$ > $dir/adding',
        '  i=0; while [ -e $dir/slow ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done',
        '  printf "%s" "$input" | sed -n \'s/.*"prevResult":\\({.*}\\)}$/\\1/p\'',
        '  exit 0',
        'fi',
        'if [ "$CNI_COMMAND" = DEL ]; then echo "DEL $CNI_CONTAINERID" >> $dir/deleted; fi',
        'exit 0',
      ].join('\n'),
    );
    chmodSync(join(binDir, 'bt-slow'), 0o755);
    const list = defaultConflist(NET);
    list.plugins = [list.plugins[0], { type: 'bt-slow' }];
    s = await startSandboxBerthd(NET, { binDirs: [binDir, '/usr/lib/cni'], writeDefault: false, conflist: { file: '10-recover.conflist', list } });
  });
  after(async () => {
    rmSync(join(binDir, 'slow'), { force: true });
    if (slowPid > 0) {
      try {
        process.kill(slowPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await s?.cleanup();
    rmSync(binDir, { recursive: true, force: true });
  });

  test('a pod whose RunPodSandbox was cut short by a crash is undone at the next start', async () => {
    writeFileSync(join(binDir, 'slow'), '');
    const running = s.berthd.client.call('RunPodSandbox', { config: podConfig('crashed'), runtime_handler: '' }).catch((e: Error) => e);
    for (let i = 0; i < 200 && !existsSync(join(binDir, 'adding')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(join(binDir, 'adding')), 'the slow plugin was reached');
    slowPid = Number(readFileSync(join(binDir, 'adding'), 'utf8').trim());
    assert.equal(ipFiles(NET.name).length, 1, 'bridge already took an address');
    assert.equal(readdirSync(join(s.nsDir, 'net')).length, 1);

    await s.berthd.stop('SIGKILL');
    assert.ok((await running) instanceof Error);
    rmSync(join(binDir, 'slow'), { force: true });
    process.kill(slowPid, 'SIGKILL');
    slowPid = 0;

    await s.berthd.start();
    assert.deepEqual((await s.berthd.client.call('ListPodSandbox', {})).items, []);
    for (const kind of ['net', 'ipc', 'uts']) assert.deepEqual(readdirSync(join(s.nsDir, kind)), []);
    assert.deepEqual(ipFiles(NET.name), [], 'the attachment was deleted from the cache ADD wrote first');
    assert.match(readFileSync(join(binDir, 'deleted'), 'utf8'), /^DEL [0-9a-f]{64}$/m);
    assert.deepEqual(mountsUnder(join(s.berthd.state, 'sandboxes')), []);
    assert.deepEqual(readdirSync(join(s.berthd.state, 'sandboxes')), []);
    assert.deepEqual(readdirSync(join(s.cacheDir, 'attachments')), []);

    // And the daemon works afterwards.
    const { pod_sandbox_id: id } = await s.berthd.client.call('RunPodSandbox', { config: podConfig('after-crash'), runtime_handler: '' });
    assert.equal((await s.berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: false })).status!.state, 'SANDBOX_READY');
    await removeAllPods(s.berthd);
  });

  test('UpdatePodSandboxResources writes pod-level limits to the pod cgroup', async () => {
    const c = s.berthd.client;
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config: podConfig('resources'), runtime_handler: '' });
    const st = await c.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const parent = (JSON.parse(st.info.info) as { cgroupParent: string }).cgroupParent;
    await c.call('UpdatePodSandboxResources', {
      pod_sandbox_id: id,
      overhead: null,
      resources: { cpu_shares: '512', memory_limit_in_bytes: String(256 * 1024 * 1024) } as never,
    });
    assert.equal(readFileSync(join('/sys/fs/cgroup/cpu', parent, 'cpu.shares'), 'utf8').trim(), '512');
    assert.equal(readFileSync(join('/sys/fs/cgroup/memory', parent, 'memory.limit_in_bytes'), 'utf8').trim(), String(256 * 1024 * 1024));
    await assert.rejects(c.call('UpdatePodSandboxResources', { pod_sandbox_id: 'f'.repeat(64), overhead: null, resources: null }), (e: unknown) => (e as { code: number }).code === 5);
    await c.call('RemovePodSandbox', { pod_sandbox_id: id });
    assert.equal(existsSync(join('/sys/fs/cgroup/cpu', parent)), false);
  });
});
