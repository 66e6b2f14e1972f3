// Pods with their own user namespace (hostUsers: false, userns_options mode
// POD) through a real berthd: the user namespace is pinned with the kubelet's
// mappings, the pod's network/IPC/UTS (and shared PID) namespaces belong to it,
// everything is released on removal; the options the CRI refuses are refused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { PodSandboxConfig } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { loadNative } from '../../native';
import * as grpc from '@grpc/grpc-js';
import { grpcCode } from '../support/cri-client';
import { testNetwork } from '../support/test-network';
import { podConfig, sandboxBerthdForSuite } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-sbx-userns', bridge: 'bt-usr0', subnet: '10.86.5.0/24' });
const native = loadNative();
const FIELD = 'config.linux.security_context.namespace_options.userns_options';

interface VerboseInfo {
  namespaces: { network: string; ipc: string; uts: string; pid: string; user: string };
  userNamespace?: { uids: { containerId: number; hostId: number; size: number } };
}

function usernsPod(name: string, usernsOptions: unknown, modes: Record<string, string> = { network: 'POD', pid: 'POD', ipc: 'POD' }): PodSandboxConfig {
  return podConfig(name, {
    linux: {
      cgroup_parent: '',
      security_context: { namespace_options: { ...modes, userns_options: usernsOptions } as never },
      sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
    },
  });
}

const POD_MAPPING = { mode: 'POD', uids: [{ container_id: 0, host_id: 231072, length: 65536 }], gids: [{ container_id: 0, host_id: 231072, length: 65536 }] };

describe('pod user namespaces', () => {
  const s = sandboxBerthdForSuite(NET);

  async function info(id: string): Promise<VerboseInfo> {
    const st = await s.berthd.client.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    return JSON.parse(st.info.info) as VerboseInfo;
  }

  test("a POD user namespace is pinned with the kubelet's mappings and owns the pod's other namespaces", async (t) => {
    const status = await s.berthd.client.call('Status', { verbose: true });
    const host = JSON.parse(status.info.host) as { mountFeatures: { userNamespaces: { supported: boolean; reason?: string } } };
    if (!host.mountFeatures.userNamespaces.supported) return t.skip(`this host cannot: ${host.mountFeatures.userNamespaces.reason}`);

    const { pod_sandbox_id: id } = await s.berthd.client.call('RunPodSandbox', { config: usernsPod('userns-web', POD_MAPPING), runtime_handler: '' });
    const v = await info(id);
    assert.ok(v.namespaces.user.startsWith(join(s.nsDir, 'user')), v.namespaces.user);
    assert.deepEqual(v.userNamespace?.uids, { containerId: 0, hostId: 231072, size: 65536 });
    const userInode = statSync(v.namespaces.user).ino;
    for (const path of [v.namespaces.network, v.namespaces.ipc, v.namespaces.uts, v.namespaces.pid]) {
      assert.equal(native.namespaceOwner(path), userInode, `${path} belongs to the pod's user namespace`);
    }
    const inside = execFileSync('nsenter', [`--user=${v.namespaces.user}`, `--net=${v.namespaces.network}`, '--', 'sh', '-c', 'cat /proc/self/uid_map; cat /proc/sys/net/ipv4/ip_unprivileged_port_start'], {
      encoding: 'utf8',
    });
    assert.deepEqual(inside.trim().split(/\s+/), ['0', '231072', '65536', '0']);

    await s.berthd.client.call('StopPodSandbox', { pod_sandbox_id: id });
    await s.berthd.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    for (const kind of ['user', 'net', 'ipc', 'uts']) assert.deepEqual(readdirSync(join(s.nsDir, kind)), [], `${kind} pins released`);
    assert.equal(
      readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.includes(id)),
      false,
      'no mount of the pod is left',
    );
  });

  test('NODE mode is the host user namespace', async () => {
    const { pod_sandbox_id: id } = await s.berthd.client.call('RunPodSandbox', { config: usernsPod('userns-node', { mode: 'NODE', uids: [], gids: [] }), runtime_handler: '' });
    const v = await info(id);
    assert.equal(v.namespaces.user, '');
    assert.equal(native.namespaceOwner(v.namespaces.network), statSync('/proc/self/ns/user').ino);
  });

  test('the user namespace options the CRI does not allow are INVALID_ARGUMENT naming the field', async () => {
    const mapping = (container_id: number) => [{ container_id, host_id: 231072, length: 65536 }];
    const cases: [string, unknown, Record<string, string> | undefined, RegExp][] = [
      ['two mappings', { mode: 'POD', uids: [...mapping(0), { container_id: 0, host_id: 400000, length: 65536 }], gids: mapping(0) }, undefined, /uids: mode POD takes exactly one mapping, got 2/],
      ['container id 0 unmapped', { mode: 'POD', uids: mapping(1), gids: mapping(1) }, undefined, /uids\[0\]\.container_id: 1/],
      ['no gid mapping', { mode: 'POD', uids: mapping(0), gids: [] }, undefined, /gids: mode POD takes exactly one mapping, got 0/],
      ['mode CONTAINER', { mode: 'CONTAINER', uids: [], gids: [] }, undefined, /mode: CONTAINER is not a user namespace mode/],
      ['mode TARGET', { mode: 'TARGET', uids: [], gids: [] }, undefined, /mode: TARGET is not a user namespace mode/],
      ['host network', POD_MAPPING, { network: 'NODE', pid: 'POD', ipc: 'POD' }, /cannot use the host's NETWORK namespace/],
    ];
    for (const [what, options, modes, message] of cases) {
      const config = usernsPod(`userns-bad-${what.replace(/\W+/g, '-')}`, options, modes);
      if (modes?.network === 'NODE') config.linux!.sysctls = {};
      const err = await s.berthd.client.call('RunPodSandbox', { config, runtime_handler: '' }).then(
        () => assert.fail(`${what} was accepted`),
        (e: unknown) => e as Error,
      );
      assert.equal(grpcCode(err), grpc.status.INVALID_ARGUMENT, what);
      assert.ok(err.message.includes(FIELD), `${what}: ${err.message}`);
      assert.match(err.message, message, what);
    }
    const { items } = await s.berthd.client.call('ListPodSandbox', {});
    assert.equal(items.length, 0);
  });
});
