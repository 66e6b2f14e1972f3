// Duplicate pod names through a real berthd: a pod's metadata is reserved for
// it once its RunPodSandbox answer was delivered (ALREADY_EXISTS naming the
// name and its owner), but a retry of a RunPodSandbox whose caller timed out
// before the answer came gets the pod that first call made. A CNI plugin that
// takes a second per ADD makes "the caller timed out first" certain.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { grpcCode } from '../support/cri-client';
import { testNetwork } from '../support/test-network';
import { podConfig, sandboxBerthdForSuite } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-sbx-dup', bridge: 'bt-dup0', subnet: '10.86.9.0/24' });
const ALREADY_EXISTS = 6;
const DEADLINE_EXCEEDED = 4;
/** What the slow plugin waits before each ADD, and the client deadline that is sure to pass first. */
const ADD_DELAY_S = 1.5;
const SHORT_DEADLINE_MS = 300;

describe('duplicate pod names', () => {
  // The real bridge plugin, a moment late on ADD; in place before berthd starts and reads its conf dir.
  const pluginDir = mkdtempSync('/tmp/berth-slow-cni-');
  const plugin = join(pluginDir, 'slowbridge');
  const bridge = ['/usr/lib/cni/bridge', '/opt/cni/bin/bridge'].map((p) => `[ -x ${p} ] && exec ${p}`).join('\n');
  writeFileSync(plugin, `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && sleep ${ADD_DELAY_S}\n${bridge}\nexit 1\n`);
  chmodSync(plugin, 0o755);
  const s = sandboxBerthdForSuite(NET, {
    binDirs: [pluginDir, '/usr/lib/cni', '/opt/cni/bin'],
    writeDefault: false,
    conflist: {
      file: '10-slow.conflist',
      list: {
        cniVersion: '1.0.0',
        name: NET.name,
        plugins: [{ type: 'slowbridge', bridge: NET.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: NET.subnet }]] } }],
      },
    },
  });
  after(() => rmSync(pluginDir, { recursive: true, force: true }));

  const isCode = (code: number, ...words: string[]) => (e: unknown): boolean => {
    assert.equal(grpcCode(e), code, String(e));
    for (const w of words) assert.ok(String((e as Error).message).includes(w), `"${(e as Error).message}" names ${w}`);
    return true;
  };

  test('a second RunPodSandbox of a delivered, ready pod is ALREADY_EXISTS naming the reserved name and the pod that holds it', async () => {
    const c = s.berthd.client;
    const config = podConfig('twice');
    const { pod_sandbox_id: id } = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    const m = config.metadata!;
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }), isCode(ALREADY_EXISTS, `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`, id));
    assert.equal((await c.call('ListPodSandbox', {})).items.length, 1, 'no second pod');
  });

  test('a retry after the first RunPodSandbox timed out on the client gets the pod the first call made, once', async () => {
    const c = s.berthd.client;
    const config = podConfig('timedout');
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }, { timeoutMs: SHORT_DEADLINE_MS }), isCode(DEADLINE_EXCEEDED));
    // The server finishes the pod after the caller left; wait for it to be listed, never delivered.
    let made = '';
    for (let i = 0; i < 200 && !made; i++) {
      made = (await c.call('ListPodSandbox', {})).items.find((p) => p.metadata?.name === 'timedout')?.id ?? '';
      if (!made) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(made, 'the first call made its pod');
    const retry = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    assert.equal(retry.pod_sandbox_id, made, 'the retry gets the undelivered pod');
    // Delivered now: the name is the pod's.
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }), isCode(ALREADY_EXISTS, made));
    assert.equal((await c.call('ListPodSandbox', {})).items.length, 1);
  });

  test('a retry while the timed-out first call is still running joins it and gets its pod', async () => {
    const c = s.berthd.client;
    const config = podConfig('inflight');
    const first = c.call('RunPodSandbox', { config, runtime_handler: '' }, { timeoutMs: SHORT_DEADLINE_MS });
    await assert.rejects(first, isCode(DEADLINE_EXCEEDED));
    const retry = await c.call('RunPodSandbox', { config, runtime_handler: '' });
    const items = (await c.call('ListPodSandbox', {})).items;
    assert.deepEqual(items.map((p) => p.id), [retry.pod_sandbox_id], 'one pod, the one the retry got');
    await assert.rejects(c.call('RunPodSandbox', { config, runtime_handler: '' }), isCode(ALREADY_EXISTS, retry.pod_sandbox_id));
  });
});
