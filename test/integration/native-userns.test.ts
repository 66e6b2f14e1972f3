// The addon's pod user namespace (native/src/userns.cc): a user namespace
// pinned with the maps it was given, and the pod's net/IPC/UTS namespaces
// created inside it, so they are owned by it. Checked from outside with nsenter
// (util-linux) and ioctl(NS_GET_USERNS), never from the addon's own word.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PodUserNamespaceOptions } from '../../native';
import { withScratchMounts, type ScratchMounts } from '../support/scratch-mounts';

const UIDS = [{ containerId: 0, hostId: 100000, size: 65536 }];
const GIDS = [{ containerId: 0, hostId: 200000, size: 65536 }];

function podUserns(s: ScratchMounts, extra: Partial<PodUserNamespaceOptions> = {}): PodUserNamespaceOptions {
  const options: PodUserNamespaceOptions = {
    user: s.pinned(join(s.dir, 'user')),
    net: s.pinned(join(s.dir, 'net')),
    ipc: s.pinned(join(s.dir, 'ipc')),
    uts: s.pinned(join(s.dir, 'uts')),
    hostname: 'userns-pod',
    sysctls: [],
    loopbackUp: true,
    uidMappings: UIDS,
    gidMappings: GIDS,
    ...extra,
  };
  s.native.createPodUserNamespace(options);
  return options;
}

/** Runs a shell command as root of the pinned user namespace, inside the given pinned namespaces. */
function inPod(joins: string[], script: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('nsenter', [...joins, '--', 'sh', '-c', script], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a pinned user namespace carries the uid and gid maps it was given', () =>
  withScratchMounts('userns-maps', (s) => {
    const ns = podUserns(s);
    assert.equal(s.native.namespaceFileState(ns.user), 'pinned');
    const r = inPod([`--user=${ns.user}`], 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map');
    assert.equal(r.status, 0, r.stderr);
    const [uidMap, gidMap] = r.stdout.split('--\n').map((t) => t.trim().split(/\s+/).map(Number));
    assert.deepEqual(uidMap, [0, 100000, 65536]);
    assert.deepEqual(gidMap, [0, 200000, 65536]);
  }));

test('the net, IPC and UTS namespaces created with it are owned by it, and it by the host user namespace', () =>
  withScratchMounts('userns-owner', (s) => {
    const ns = podUserns(s);
    const userInode = statSync(ns.user).ino;
    for (const pin of [ns.net, ns.ipc, ns.uts]) {
      assert.equal(s.native.namespaceFileState(pin), 'pinned', pin);
      assert.equal(s.native.namespaceOwner(pin), userInode, `${pin} is owned by the pod's user namespace`);
    }
    assert.equal(s.native.namespaceOwner(ns.user), statSync('/proc/self/ns/user').ino);
    assert.notEqual(statSync(ns.net).ino, statSync('/proc/self/ns/net').ino);
  }));

test('hostname, sysctls and the loopback link are set inside the namespaces it owns', () =>
  withScratchMounts('userns-setup', (s) => {
    const ns = podUserns(s, { sysctls: [['/proc/sys/net/ipv4/ip_unprivileged_port_start', '0']] });
    const r = inPod([`--user=${ns.user}`, `--net=${ns.net}`, `--uts=${ns.uts}`], 'hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; cat /sys/class/net/lo/flags');
    assert.equal(r.status, 0, r.stderr);
    const [hostname, portStart, loFlags] = r.stdout.trim().split('\n');
    assert.equal(hostname, 'userns-pod');
    assert.equal(portStart, '0');
    assert.equal(Number(loFlags) & 1, 1, 'lo is IFF_UP');
  }));

test("the user namespace's root may change the pod's network sysctls and hostname, not the host's", () =>
  withScratchMounts('userns-root', (s) => {
    const ns = podUserns(s);
    const inside = inPod([`--user=${ns.user}`, `--net=${ns.net}`, `--uts=${ns.uts}`], 'echo 123 > /proc/sys/net/ipv4/ip_unprivileged_port_start && hostname renamed && cat /proc/sys/net/ipv4/ip_unprivileged_port_start && hostname');
    assert.equal(inside.status, 0, inside.stderr);
    assert.deepEqual(inside.stdout.trim().split('\n'), ['123', 'renamed']);
    // Same process credentials, host network namespace: the pod's root is nobody there.
    const before = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8');
    const outside = inPod([`--user=${ns.user}`], 'echo 123 > /proc/sys/net/ipv4/ip_unprivileged_port_start');
    assert.notEqual(outside.status, 0, 'writing a host sysctl from the user namespace must fail');
    assert.match(outside.stderr, /Permission denied/);
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'), before);
  }));

test('only a user namespace is pinned when no other namespace is asked for', () =>
  withScratchMounts('userns-only', (s) => {
    const ns = podUserns(s, { net: '', ipc: '', uts: '', hostname: '', loopbackUp: false });
    assert.equal(s.native.namespaceFileState(ns.user), 'pinned');
    for (const kind of ['net', 'ipc', 'uts']) assert.equal(existsSync(join(s.dir, kind)), false, kind);
  }));

test('a map the kernel refuses is an error naming it, and leaves nothing pinned', () =>
  withScratchMounts('userns-refused', (s) => {
    const overlapping = [
      { containerId: 0, hostId: 100000, size: 65536 },
      { containerId: 10, hostId: 300000, size: 1 },
    ];
    assert.throws(() => podUserns(s, { uidMappings: overlapping }), (err: Error & { errno?: number }) => {
      assert.match(err.message, /uid_map \(0 100000 65536; 10 300000 1\)/);
      assert.equal(err.errno, 22);
      return true;
    });
    for (const kind of ['user', 'net', 'ipc', 'uts']) assert.equal(s.native.namespaceFileState(join(s.dir, kind)), 'missing', kind);
  }));

test('malformed mappings are a TypeError naming the field, before anything is created', () =>
  withScratchMounts('userns-malformed', (s) => {
    assert.throws(() => podUserns(s, { uidMappings: [] }), { name: 'TypeError', message: /uidMappings: expected a non-empty array/ });
    assert.throws(() => podUserns(s, { gidMappings: [{ containerId: 0, hostId: -1, size: 1 }] }), { name: 'TypeError', message: /gidMappings\[0\]\.hostId/ });
    assert.throws(() => podUserns(s, { uidMappings: [{ containerId: 0, hostId: 1, size: 0 }] }), { name: 'TypeError', message: /uidMappings\[0\]\.size: .* above 0/ });
    assert.equal(existsSync(join(s.dir, 'user')), false);
  }));

test('unpinning releases the user namespace and its namespaces, and is idempotent', () =>
  withScratchMounts('userns-unpin', (s) => {
    const ns = podUserns(s);
    for (const pin of [ns.user, ns.net, ns.ipc, ns.uts]) {
      s.native.unpinNamespace(pin);
      assert.equal(s.native.namespaceFileState(pin), 'missing', pin);
      s.native.unpinNamespace(pin);
    }
  }));
