// The CNI client against real plugins (bridge, host-local, portmap, loopback)
// in network namespaces pinned by the native addon, plus fake plugin scripts
// that speak the plugin protocol for the failure, STATUS and GC cases.
import { addressIn, testNetwork } from '../support/test-network';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CniPluginError } from '../../cni/cni-error';
import { CniNetwork, podIpsOf } from '../../cni/cni-network';
import type { Attachment } from '../../cni/cni-types';
import { defaultConflist } from '../../cni/default-conflist';
import { loadNative } from '../../native';

const NET = testNetwork({ name: 'bt-cnic', bridge: 'bt-cnic0', subnet: '10.87.1.0/24' });
const OTHER = testNetwork({ name: 'bt-cnic2', bridge: 'bt-cnic1', subnet: '10.87.2.0/24' });

describe('CNI client with real plugins', () => {
  const native = loadNative();
  let dir: string;
  let confDir: string;
  let binDir: string;
  let nsDir: string;
  let network: CniNetwork;
  const pins: string[] = [];

  function newNetns(name: string): string {
    const path = join(nsDir, name);
    native.createPodNamespaces({ net: path, ipc: '', uts: '', hostname: '', sysctls: [], loopbackUp: true });
    pins.push(path);
    return path;
  }

  function attachment(id: string, netnsPath: string): Attachment {
    return {
      containerId: id,
      netnsPath,
      ifName: 'eth0',
      args: [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'ns'], ['K8S_POD_NAME', id], ['K8S_POD_INFRA_CONTAINER_ID', id], ['K8S_POD_UID', `uid-${id}`]],
      runtimeConfig: {},
    };
  }

  /** A plugin script that fails `command` with the error JSON `error` and prints `otherwise` (may be '') for every other command. */
  function fakePlugin(name: string, command: string, error: string, otherwise: string): void {
    const path = join(binDir, name);
    const rest = otherwise ? `echo '${otherwise}'\n` : 'exit 0\n';
    writeFileSync(path, `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ${command} ]; then echo '${error}'; exit 1; fi\n${rest}`);
    chmodSync(path, 0o755);
  }

  function writeConf(list: object, file = '10-test.conflist'): void {
    for (const f of readdirSync(confDir)) rmSync(join(confDir, f));
    writeFileSync(join(confDir, file), JSON.stringify(list));
  }

  function ipFiles(name: string): string[] {
    const d = join('/var/lib/cni/networks', name);
    return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
  }

  before(() => {
    dir = mkdtempSync('/tmp/berth-cni-client-');
    confDir = join(dir, 'net.d');
    binDir = join(dir, 'bin');
    nsDir = join(dir, 'ns');
    for (const d of [confDir, binDir, nsDir]) mkdirSync(d, { recursive: true });
    native.makePrivateMount(nsDir);
    network = new CniNetwork({ confDir, binDirs: [binDir, '/usr/lib/cni', '/opt/cni/bin'], cacheDir: join(dir, 'cache') });
  });

  after(() => {
    for (const p of pins) native.unpinNamespace(p);
    spawnSync('umount', ['-l', nsDir]);
    for (const n of [NET, OTHER]) {
      spawnSync('ip', ['link', 'del', n.bridge]);
      rmSync(join('/var/lib/cni/networks', n.name), { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('ADD gives the pod an address from the subnet, CHECK passes, DEL releases it', async () => {
    writeConf(defaultConflist(NET));
    const netns = newNetns('a');
    const result = await network.add(attachment('cnic-a', netns));
    const ips = podIpsOf(result);
    assert.equal(ips.length, 1);
    assert.match(ips[0], addressIn(NET));
    assert.match(execFileSync('nsenter', [`--net=${netns}`, 'ip', '-o', 'addr', 'show', 'eth0'], { encoding: 'utf8' }), new RegExp(ips[0].replace(/\./g, '\\.')));
    await network.check('cnic-a');
    assert.deepEqual(ipFiles(NET.name), [ips[0]]);
    await network.del('cnic-a');
    assert.deepEqual(ipFiles(NET.name), []);
    assert.equal(network.cache.read('cnic-a', 'eth0'), undefined);
    await network.del('cnic-a');
  });

  test('DEL uses the config ADD used even after the conf dir changed', async () => {
    writeConf(defaultConflist(OTHER));
    const netns = newNetns('b');
    await network.add(attachment('cnic-b', netns));
    assert.equal(ipFiles(OTHER.name).length, 1);
    writeConf(defaultConflist(NET));
    await network.del('cnic-b');
    assert.deepEqual(ipFiles(OTHER.name), [], 'the IP was released from the network ADD used');
  });

  test("a failing plugin's error JSON is surfaced and the partial attachment is undone", async () => {
    fakePlugin('bt-fail', 'ADD', '{"cniVersion":"1.0.0","code":7,"msg":"bt-fail refuses","details":"on purpose"}', '');
    const list = defaultConflist(NET);
    list.plugins.splice(1, 0, { type: 'bt-fail' });
    writeConf(list);
    const netns = newNetns('c');
    await assert.rejects(network.add(attachment('cnic-c', netns)), (err: unknown) => {
      assert.ok(err instanceof CniPluginError);
      assert.equal(err.body.code, 7);
      assert.match(err.message, /bt-fail refuses/);
      assert.match(err.message, /on purpose/);
      return true;
    });
    assert.deepEqual(ipFiles(NET.name), [], 'bridge ADD before the failure was deleted');
    assert.equal(network.cache.read('cnic-c', 'eth0'), undefined);
  });

  test('STATUS: a CNI 1.1 plugin that reports not ready makes the network not ready', async () => {
    fakePlugin('bt-status', 'STATUS', '{"cniVersion":"1.1.0","code":50,"msg":"no route to the pod network yet"}', '{"cniVersion":"1.1.0"}');
    writeConf({ cniVersion: '1.1.0', name: 'bt-status', plugins: [{ type: 'bt-status' }] });
    const status = await network.status();
    assert.equal(status.ready, false);
    assert.match(status.message, /no route to the pod network yet/);

    writeConf({ cniVersion: '1.0.0', name: 'bt-missing', plugins: [{ type: 'bt-no-such-plugin' }] });
    const missing = await network.status();
    assert.equal(missing.ready, false);
    assert.match(missing.message, /bt-no-such-plugin/);

    for (const f of readdirSync(confDir)) rmSync(join(confDir, f));
    assert.equal((await network.status()).ready, false);
    writeConf(defaultConflist(NET));
    const ready = await network.status();
    assert.deepEqual([ready.ready, ready.reason, ready.message, ready.network?.name], [true, '', '', NET.name]);
  });

  test('Status of a watched network: a ready answer is reused, a new config is seen at once, a not-ready answer is not kept', async () => {
    const watchedConfDir = join(dir, 'watched.d');
    mkdirSync(watchedConfDir);
    const statusLog = join(dir, 'status-calls');
    // A CNI 1.1 plugin whose every STATUS leaves a line in statusLog.
    writeFileSync(join(binDir, 'bt-counted'), `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = STATUS ]; then echo x >> ${statusLog}; exit 0; fi\necho '{"cniVersion":"1.1.0"}'\n`);
    chmodSync(join(binDir, 'bt-counted'), 0o755);
    const watched = new CniNetwork({ confDir: watchedConfDir, binDirs: [binDir], cacheDir: join(dir, 'watched-cache') });
    await watched.watchConfDir();
    try {
      writeFileSync(join(watchedConfDir, '10-counted.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: 'bt-counted', plugins: [{ type: 'bt-counted' }] }));
      await watched.rescanConfDir();
      const answers = await Promise.all([watched.status(), watched.status()]);
      for (let i = 0; i < 5; i++) answers.push(await watched.status());
      assert.deepEqual(answers.map((a) => a.ready), Array(7).fill(true));
      assert.equal(readFileSync(statusLog, 'utf8').split('\n').filter(Boolean).length, 1, 'one STATUS exec for seven Status answers');

      writeFileSync(join(watchedConfDir, '05-later.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'bt-later', plugins: [{ type: 'bt-later' }] }));
      await watched.rescanConfDir();
      const changed = await watched.status();
      assert.equal(changed.ready, false, 'the new config is seen although a ready answer was kept');
      assert.match(changed.message, /"bt-later"/);

      writeFileSync(join(binDir, 'bt-later'), '#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0"}\'\n');
      chmodSync(join(binDir, 'bt-later'), 0o755);
      const arrived = await watched.status();
      assert.deepEqual([arrived.ready, arrived.network?.name], [true, 'bt-later'], 'a not-ready answer is not kept: the plugin is seen as soon as it is there');
    } finally {
      watched.stopWatching();
    }
  });

  test('GC deletes attachments whose pod is gone and keeps live ones', async () => {
    writeConf(defaultConflist(NET));
    const live = await network.add(attachment('cnic-live', newNetns('d')));
    await network.add(attachment('cnic-gone', newNetns('e')));
    assert.equal(ipFiles(NET.name).length, 2);
    const report = await network.gc(new Set(['cnic-live']));
    assert.deepEqual(report.removed, ['cnic-gone']);
    assert.deepEqual(ipFiles(NET.name), podIpsOf(live));
    await network.del('cnic-live');
    assert.deepEqual(ipFiles(NET.name), []);
  });
});
