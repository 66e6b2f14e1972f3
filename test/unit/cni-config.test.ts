import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pluginStdin, podIpsOf } from '../../cni/cni-network';
import {
  applyPodCidrToDefault, DEFAULT_CONFLIST_FILE, defaultConflist, ensureDefaultNetwork, isLegacyBerthConflist, ownedDefaultConflist,
} from '../../cni/default-conflist';
import { compareVersions, NetworkConfigError, parseNetworkConfig } from '../../cni/network-config';
import { BERTH_OWNED_KEY, selectNetwork } from '../../cni/network-config-dir';
import { formatCniArgs } from '../../cni/plugin-exec';

describe('CNI network config', () => {
  test('a single-plugin .conf is wrapped as a list of one', () => {
    const list = parseNetworkConfig('/x/10-a.conf', JSON.stringify({ cniVersion: '0.4.0', name: 'a', type: 'bridge', bridge: 'br0' }));
    assert.deepEqual(list, { cniVersion: '0.4.0', name: 'a', plugins: [{ type: 'bridge', bridge: 'br0' }] });
  });

  test('broken configs name the file and the problem', () => {
    assert.throws(() => parseNetworkConfig('/x/a.conflist', '{'), (e: unknown) => e instanceof NetworkConfigError && /a\.conflist: not JSON/.test(e.message));
    assert.throws(() => parseNetworkConfig('/x/a.conflist', '{"cniVersion":"1.0.0","name":"a","plugins":[]}'), /non-empty/);
    assert.throws(() => parseNetworkConfig('/x/a.conflist', '{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}'), /"name"/);
    assert.throws(() => parseNetworkConfig('/x/a.conflist', '{"cniVersion":"1.0.0","name":"a","plugins":[{}]}'), /plugins\[0\]\.type/);
  });

  test('the first file in lexical order that parses is the network; broken ones are skipped and named', async () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      assert.deepEqual(await selectNetwork(dir), { confDir: dir, skipped: [] });
      writeFileSync(join(dir, '20-second.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'second', plugins: [{ type: 'ptp' }] }));
      writeFileSync(join(dir, '10-first.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'first', type: 'bridge' }));
      writeFileSync(join(dir, '05-broken.conflist'), '{"cniVersion":');
      writeFileSync(join(dir, '00-notes.txt'), 'not a config');
      const selection = await selectNetwork(dir);
      assert.equal(selection.network?.list.name, 'first');
      assert.equal(selection.network?.path, join(dir, '10-first.conf'));
      assert.equal(selection.skipped.length, 1);
      assert.match(selection.skipped[0], /^05-broken\.conflist: not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("berth's fallback is selected only while no other config parses, whatever the other file is called", async () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      const options = { name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' };
      assert.deepEqual(await ensureDefaultNetwork(dir, options, true), { action: 'written', path: join(dir, DEFAULT_CONFLIST_FILE) });
      const fallback = await selectNetwork(dir);
      assert.equal(fallback.network?.berthOwned, true);
      assert.equal(fallback.network?.list[BERTH_OWNED_KEY], 'berthd');
      writeFileSync(join(dir, 'zz-cluster.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'cluster', plugins: [{ type: 'ptp' }] }));
      const cluster = await selectNetwork(dir);
      assert.equal(cluster.network?.list.name, 'cluster');
      assert.equal(cluster.network?.berthOwned, false);
      assert.equal((await ensureDefaultNetwork(dir, options, true)).action, 'present', 'the fallback present is kept as it is');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the fallback is not written when another config exists or writing is off', async () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      const options = { name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' };
      assert.deepEqual(await ensureDefaultNetwork(dir, options, false), { action: 'not-needed' });
      writeFileSync(join(dir, '10-flannel.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', plugins: [{ type: 'flannel' }] }));
      assert.deepEqual(await ensureDefaultNetwork(dir, options, true), { action: 'not-needed' });
      assert.deepEqual(readdirSync(dir), ['10-flannel.conflist']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("berth's old 10-<name>.conflist is renamed to the fallback only when it is exactly what berth wrote", async () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      const options = { name: 'berth', bridge: 'berth0', subnet: '10.85.0.0/16' };
      // Byte for byte what berthd wrote before its files carried a mark.
      writeFileSync(join(dir, '10-berth.conflist'), `${JSON.stringify(defaultConflist(options), null, 2)}\n`);
      const outcome = await ensureDefaultNetwork(dir, options, true);
      assert.equal(outcome.action, 'migrated');
      assert.deepEqual(readdirSync(dir), [DEFAULT_CONFLIST_FILE]);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, DEFAULT_CONFLIST_FILE), 'utf8')), ownedDefaultConflist(options));

      rmSync(join(dir, DEFAULT_CONFLIST_FILE));
      const edited = defaultConflist(options);
      edited.plugins[0].mtu = 1400;
      writeFileSync(join(dir, '10-berth.conflist'), JSON.stringify(edited));
      assert.deepEqual(await ensureDefaultNetwork(dir, options, true), { action: 'not-needed' }, 'an edited file is the admin\'s now');
      assert.deepEqual(readdirSync(dir), ['10-berth.conflist']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a legacy file is recognized by its whole shape and its name, with any bridge and subnet', () => {
    const list = defaultConflist({ name: 'k', bridge: 'cni9', subnet: '10.9.0.0/16' });
    assert.equal(isLegacyBerthConflist('10-k.conflist', list), true);
    assert.equal(isLegacyBerthConflist('10-other.conflist', list), false);
    assert.equal(isLegacyBerthConflist('10-k.conflist', { ...list, plugins: list.plugins.slice(0, 2) }), false);
    assert.equal(isLegacyBerthConflist('10-k.conflist', { ...list, cniVersion: '0.4.0' }), false);
  });

  test("the kubelet's pod CIDR rewrites berth's fallback file and never anyone else's", async () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      const options = { name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' };
      assert.equal(await applyPodCidrToDefault(dir, options, '10.244.1.0/24'), 'no-fallback');
      await ensureDefaultNetwork(dir, options, true);
      const first = readFileSync(join(dir, DEFAULT_CONFLIST_FILE), 'utf8');
      assert.equal(await applyPodCidrToDefault(dir, options, '10.244.1.0/24', true), 'deferred', 'not while pods use the old subnet');
      assert.equal(readFileSync(join(dir, DEFAULT_CONFLIST_FILE), 'utf8'), first);
      assert.equal(await applyPodCidrToDefault(dir, options, '10.244.1.0/24,fd00:10:244:1::/64'), 'rewritten');
      const ipam = (JSON.parse(readFileSync(join(dir, DEFAULT_CONFLIST_FILE), 'utf8')) as { plugins: { ipam?: { ranges: unknown; routes: unknown } }[] }).plugins[0].ipam!;
      assert.deepEqual(ipam.ranges, [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64' }]]);
      assert.deepEqual(ipam.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
      assert.equal(await applyPodCidrToDefault(dir, options, '10.244.1.0/24,fd00:10:244:1::/64'), 'unchanged');

      // A file of that name that berth did not mark is left alone.
      const foreign = JSON.stringify(defaultConflist(options));
      writeFileSync(join(dir, DEFAULT_CONFLIST_FILE), foreign);
      assert.equal(await applyPodCidrToDefault(dir, options, '10.244.9.0/24'), 'no-fallback');
      assert.equal(readFileSync(join(dir, DEFAULT_CONFLIST_FILE), 'utf8'), foreign);
      assert.equal(existsSync(join(dir, `${DEFAULT_CONFLIST_FILE}.tmp`)), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the default network is bridge + host-local, portmap with portMappings, loopback', () => {
    const list = defaultConflist({ name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' });
    assert.equal(list.cniVersion, '1.0.0');
    assert.deepEqual(list.plugins.map((p) => p.type), ['bridge', 'portmap', 'loopback']);
    assert.equal(list.plugins[0].isGateway, true);
    assert.equal(list.plugins[0].ipMasq, true);
    assert.deepEqual((list.plugins[0].ipam as { ranges: unknown }).ranges, [[{ subnet: '10.88.0.0/24' }]]);
    assert.deepEqual(list.plugins[1].capabilities, { portMappings: true });
  });

  test('versions compare numerically', () => {
    assert.equal(compareVersions('0.4.0', '1.0.0'), -1);
    assert.equal(compareVersions('1.1.0', '1.0.0'), 1);
    assert.equal(compareVersions('0.10.0', '0.4.0'), 1);
    assert.equal(compareVersions('1.0.0', '1.0.0'), 0);
  });
});

describe('what a plugin is handed', () => {
  const list = { cniVersion: '1.0.0', name: 'net', plugins: [] };

  test('only the capabilities the plugin declares reach its runtimeConfig, with the previous result', () => {
    const prev = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] };
    const rc = { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' as const }], bandwidth: { ingressRate: 1 } };
    const stdin = pluginStdin(list, { type: 'portmap', capabilities: { portMappings: true, bandwidth: false } }, rc, prev);
    assert.deepEqual(stdin.runtimeConfig, { portMappings: rc.portMappings });
    assert.deepEqual(stdin.prevResult, prev);
    assert.equal(stdin.name, 'net');
    assert.equal(stdin.cniVersion, '1.0.0');
    const plain = pluginStdin(list, { type: 'bridge', runtimeConfig: { stale: true } }, rc, undefined);
    assert.equal('runtimeConfig' in plain, false);
    assert.equal('prevResult' in plain, false);
  });

  test('CNI_ARGS are key=value pairs joined by ";"', () => {
    assert.equal(formatCniArgs([['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']]), 'IgnoreUnknown=1;K8S_POD_NAME=web');
  });

  test('pod IPs are the sandbox-side addresses, IPv4 first', () => {
    const ips = podIpsOf({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'br0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/run/netns/x' }],
      ips: [
        { address: 'fd00::5/64', interface: 2 },
        { address: '10.1.0.1/24', interface: 0 },
        { address: '10.1.0.5/24', interface: 2, gateway: '10.1.0.1' },
      ],
    });
    assert.deepEqual(ips, ['10.1.0.5', 'fd00::5']);
  });
});

describe('plugins with nothing to do', () => {
  test('portmap is left out when the pod maps no ports, loopback when lo is already up', async () => {
    const { elideNoopPlugins } = await import('../../cni/cni-network');
    const list = defaultConflist({ name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' });
    assert.deepEqual(elideNoopPlugins(list, {}, true).plugins.map((p) => p.type), ['bridge']);
    assert.deepEqual(
      elideNoopPlugins(list, { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }] }, false).plugins.map((p) => p.type),
      ['bridge', 'portmap', 'loopback'],
    );
    assert.equal(elideNoopPlugins({ cniVersion: '1.0.0', name: 'l', plugins: [{ type: 'loopback' }] }, {}, true).plugins.length, 1);
  });
});
