// The pod network times each CNI call at its one caller: what the daemon's
// observer (the berth_cni_call_duration_seconds metric) is told. Real
// CniNetwork over temp dirs; no plugin runs in these cases.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CniNetwork } from '../../cni/cni-network';
import { isBerthError } from '../../runtime/errors';
import { PodNetwork } from '../../runtime/sandbox/pod-network';

describe('pod network call timing', () => {
  let dir: string;
  let seen: { operation: string; seconds: number; outcome: string }[];
  let pods: PodNetwork;

  before(() => {
    dir = mkdtempSync('/tmp/berth-pod-network-');
    mkdirSync(join(dir, 'net.d'));
    const network = new CniNetwork({ confDir: join(dir, 'net.d'), binDirs: [join(dir, 'bin')], cacheDir: join(dir, 'cache') });
    pods = new PodNetwork({ network, observe: (operation, seconds, outcome) => seen.push({ operation, seconds, outcome }) });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an ADD with no network configured is one failed ADD, answered FAILED_PRECONDITION naming the conf dir', async () => {
    seen = [];
    const request = {
      podId: 'p1',
      netnsPath: '/var/run/netns/none',
      config: { metadata: { name: 'web', namespace: 'default', uid: 'u1', attempt: 0 }, port_mappings: [], annotations: {}, dns_config: null } as never,
      bandwidth: undefined,
    };
    await assert.rejects(pods.attach(request), (e: unknown) => isBerthError(e, 'FailedPrecondition') && /^RunPodSandbox: no CNI network config found in /.test(e.message));
    assert.deepEqual(seen.map((s) => [s.operation, s.outcome]), [['ADD', 'error']]);
    assert.ok(seen[0].seconds >= 0);
  });

  test('a DEL of a pod never attached succeeds and is one DEL; GC at start is one GC', async () => {
    seen = [];
    await pods.detach('never-attached');
    assert.deepEqual(await pods.collectGarbage(new Set()), { removed: [], failed: [] });
    assert.deepEqual(seen.map((s) => [s.operation, s.outcome]), [['DEL', 'ok'], ['GC', 'ok']]);
  });
});
