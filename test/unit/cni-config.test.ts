import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pluginStdin, podIpsOf } from '../../cni/cni-network';
import { defaultConflist, writeDefaultConflistIfMissing } from '../../cni/default-conflist';
import { compareVersions, loadFirstNetwork, NetworkConfigError, parseNetworkConfig } from '../../cni/network-config';
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

  test('the first file in lexical order is the network; the default is written only into an empty dir', () => {
    const dir = mkdtempSync('/tmp/berth-cni-unit-');
    try {
      assert.equal(loadFirstNetwork(dir), undefined);
      const written = writeDefaultConflistIfMissing(dir, { name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' });
      assert.equal(written, join(dir, '10-n.conflist'));
      writeFileSync(join(dir, '05-first.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'first', plugins: [{ type: 'ptp' }] }));
      assert.equal(loadFirstNetwork(dir)!.list.name, 'first');
      assert.equal(writeDefaultConflistIfMissing(dir, { name: 'n', bridge: 'br-n', subnet: '10.88.0.0/24' }), undefined);
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
