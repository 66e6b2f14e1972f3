// Containers under runc's systemd cgroup driver, end to end: berthd runs inside
// a real systemd's namespaces (Debian's systemd as PID 1 of a systemd-nspawn
// container with the host's /usr, this checkout and a temporary directory bound
// in, see test/support/systemd-container.ts), as it would as a service of that
// systemd: it reaches systemd's private socket, runc --systemd-cgroup gets its
// container scopes from it, stats come from those scopes, and removal stops
// them. The test drives berthd over its CRI socket from outside.
//
// Seen here: under this nested systemd, `runc kill --all` signals nothing. runc
// 1.1 lists a container's processes from its devices cgroup, and the scope's
// devices cgroup stays empty while its cpu, memory, pids and freezer cgroups
// hold the processes. berth's SIGKILL therefore goes to the init of a container
// with a PID namespace of its own (the kernel then kills the namespace), and to
// every process berth itself finds in the scope for a container in the pod's or
// the host's PID namespace; the last tests check each mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { SystemdManager } from '../../runtime/cgroups/systemd-manager';
import { BERTHD_ENTRY, REPO_ROOT } from '../support/berthd-process';
import { CriClient } from '../support/cri-client';
import { buildBusyboxImage } from '../support/oci-image-builder';
import { bootSystemd, systemdUnavailableReason, type BootedSystemd } from '../support/systemd-container';
import { writeTar, type TarEntry } from '../support/tar-writer';
import { hostPidsRunning, podConfig, startContainerInPod } from './sandbox-fixture';

const IMAGE = 'example.test/systemd/busybox:1';

function berthToml(dir: string): string {
  return [
    `root = "${dir}/root"`, `state = "${dir}/state"`, `socket = "${dir}/berth.sock"`, 'log_level = "debug"',
    '[metrics]', 'port = 0', '[streaming]', 'port = 0',
    '[cgroup]', 'driver = "systemd"',
    '[cni]', `conf_dir = "${dir}/cni"`, `cache_dir = "${dir}/cni-cache"`, 'write_default_conflist = false',
    '[sandbox]', `namespace_dir = "${dir}/ns"`,
    '[oci.runtimes.runc]', `root = "${dir}/state/runc"`,
    '[oci.runtimes.crun]', `root = "${dir}/state/crun"`,
    '',
  ].join('\n');
}

/** A one-image OCI layout as a tar, for `berthd images import`. */
function busyboxLayoutTar(): Buffer {
  const image = buildBusyboxImage({ format: 'oci', compression: 'gzip' });
  const hex = (d: string): string => d.slice('sha256:'.length);
  const entries: TarEntry[] = [
    { path: 'oci-layout', type: 'file', content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    ...[image.config, image.manifest, ...image.layers].map((b): TarEntry => ({ path: `blobs/sha256/${hex(b.digest)}`, type: 'file', content: b.data })),
    { path: 'index.json', type: 'file', content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size, annotations: { 'io.containerd.image.name': IMAGE } }] }) },
  ];
  return writeTar(entries);
}

describe('containers under runc\'s systemd driver, berthd inside a real systemd', { skip: systemdUnavailableReason() }, () => {
  let dir: string;
  let systemd: BootedSystemd;
  let berthd: { hostPid: number; kill(): void } | undefined;
  let client: CriClient;
  let manager: SystemdManager;
  const slice = `kubepods-besteffort-pod${randomBytes(6).toString('hex')}.slice`;
  const sliceGroup = `/kubepods.slice/kubepods-besteffort.slice/${slice}`;
  let podId = '';
  let containerId = '';

  const logs = (): string => (existsSync(join(dir, 'berthd.log')) ? readFileSync(join(dir, 'berthd.log'), 'utf8').slice(-4000) : '');

  before(async () => {
    dir = mkdtempSync('/tmp/berth-sdct-');
    writeFileSync(join(dir, 'berth.toml'), berthToml(dir));
    // node_modules may be a link out of the checkout (a worktree's is): bind where it really is too.
    const modules = realpathSync(join(REPO_ROOT, 'node_modules'));
    const binds = ['--bind-ro=/usr', `--bind-ro=${REPO_ROOT}`, `--bind=${dir}`];
    if (!modules.startsWith(`${REPO_ROOT}/`)) binds.push(`--bind-ro=${modules}`);
    systemd = await bootSystemd({ nspawnArgs: binds });
    manager = await SystemdManager.connect({ socket: systemd.socket });
    berthd = systemd.startProcess([process.execPath, BERTHD_ENTRY, '--config', join(dir, 'berth.toml')], join(dir, 'berthd.log'));
    client = new CriClient(join(dir, 'berth.sock'));
    // berthd starts slowly on a loaded machine (host checks, then the socket): a deadline, not a count.
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        await client.call('Version', { version: '0.1.0' }, { timeoutMs: 2000 });
        break;
      } catch (err) {
        if (!existsSync(`/proc/${berthd.hostPid}`)) throw new Error(`berthd inside the systemd container exited before serving\n${logs()}`);
        if (Date.now() > deadline) throw new Error(`berthd inside the systemd container did not answer: ${(err as Error).message}\n${logs()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const imported = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'import', '--admin-socket', join(dir, 'state', 'admin', 'berth-admin.sock'), '-'], {
      input: busyboxLayoutTar(), encoding: 'utf8', timeout: 120_000,
    });
    assert.equal(imported.status, 0, imported.stderr + logs());
  });
  after(async () => {
    client?.close();
    berthd?.kill();
    manager?.close();
    await systemd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a container gets its scope from systemd, in the pod slice, and its stats are read there', async () => {
    const sandboxConfig = podConfig('sd-containers', {
      linux: { cgroup_parent: slice, security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    });
    ({ pod_sandbox_id: podId } = await client.call('RunPodSandbox', { config: sandboxConfig }));
    assert.equal(await manager.controlGroup(slice), sliceGroup);
    // startContainerInPod takes a BerthdProcess; only its client is used.
    containerId = await startContainerInPod({ client } as never, {
      podId, sandboxConfig, image: IMAGE, name: 'busy', command: ['sh', '-c', 'trap "exit 0" TERM; while :; do x=$(head -c 1000000 /dev/zero | tr "\\0" a); done'],
    }).catch((err: Error) => assert.fail(`${err.message}\n${logs()}`));
    const scope = `berth-${containerId}.scope`;
    assert.equal(await manager.controlGroup(scope), `${sliceGroup}/${scope}`);
    assert.equal(await manager.unitProperty(scope, 'ActiveState'), 'active');
    let stats;
    for (let i = 0; i < 100; i++) {
      ({ stats } = await client.call('ContainerStats', { container_id: containerId }));
      if (Number(stats?.cpu?.usage_core_nano_seconds?.value ?? 0) > 0 && Number(stats?.memory?.working_set_bytes?.value ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(Number(stats?.cpu?.usage_core_nano_seconds?.value ?? 0) > 0, `cpu read from the scope: ${JSON.stringify(stats?.cpu)}`);
    assert.ok(Number(stats?.memory?.working_set_bytes?.value ?? 0) > 0, `memory read from the scope: ${JSON.stringify(stats?.memory)}`);
  });

  test('removing the container stops its scope; removing the pod leaves the slice it named (other pods may share it)', async () => {
    const scope = `berth-${containerId}.scope`;
    await client.call('StopContainer', { container_id: containerId, timeout: '10' }).catch((err: Error) => assert.fail(`${err.message}\n${logs()}`));
    const status = await client.call('ContainerStatus', { container_id: containerId });
    assert.equal(status.status?.state, 'CONTAINER_EXITED');
    assert.equal(status.status?.exit_code, 0);
    await client.call('RemoveContainer', { container_id: containerId });
    assert.equal(await manager.unitPath(scope), undefined, 'the scope is gone');
    await client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await client.call('RemovePodSandbox', { pod_sandbox_id: podId });
    try {
      assert.notEqual(await manager.unitPath(slice), undefined, 'a slice the pod named is never berth\'s to stop');
    } finally {
      await manager.stopUnit(slice);
    }
  });

  // Each container ignores SIGTERM and leaves a child that ignores it too. With a PID namespace of its
  // own its init is killed after a grace period; in the pod's or the host's, StopContainer with no
  // timeout must reach every process of the scope itself, since runc kill --all signals nothing here.
  const stops = [
    { pid: 'CONTAINER', timeout: '1', how: 'after the grace period, with its child, through its own PID namespace' },
    { pid: 'POD', timeout: '0', how: 'at once in the pod\'s PID namespace, with its child, from its scope\'s processes' },
    { pid: 'NODE', timeout: '0', how: 'at once in the host\'s PID namespace, with its child, from its scope\'s processes' },
  ] as const;
  for (const { pid, timeout, how } of stops) {
    test(`a container that ignores SIGTERM is killed ${how}`, async () => {
      const namespaceOptions = { network: 'NODE', pid, ipc: 'POD' } as const;
      const sandboxConfig = podConfig(`sd-stubborn-${pid.toLowerCase()}`, {
        linux: { cgroup_parent: slice, security_context: { namespace_options: namespaceOptions }, sysctls: {} },
      });
      const { pod_sandbox_id: stubbornPod } = await client.call('RunPodSandbox', { config: sandboxConfig });
      try {
        const child = ['sleep', String(900_000_000 + randomInt(99_999_999))];
        const id = await startContainerInPod({ client } as never, {
          podId: stubbornPod, sandboxConfig, image: IMAGE, name: 'stubborn',
          command: ['sh', '-c', `trap "" TERM; ${child.join(' ')} & while :; do sleep 1; done`],
          extra: { linux: { security_context: { namespace_options: namespaceOptions } } },
        }).catch((err: Error) => assert.fail(`${err.message}\n${logs()}`));
        for (let i = 0; i < 200 && hostPidsRunning(child).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
        assert.notDeepEqual(hostPidsRunning(child), [], 'the child runs');
        await client.call('StopContainer', { container_id: id, timeout }).catch((err: Error) => assert.fail(`${err.message}\n${logs()}`));
        const { status } = await client.call('ContainerStatus', { container_id: id });
        assert.equal(status?.state, 'CONTAINER_EXITED');
        assert.equal(status?.exit_code, 137, 'the init died of SIGKILL');
        for (let i = 0; i < 200 && hostPidsRunning(child).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(hostPidsRunning(child), [], 'the child was killed too');
        await client.call('RemoveContainer', { container_id: id });
        assert.equal(await manager.unitPath(`berth-${id}.scope`), undefined, 'the scope is gone');
      } finally {
        await client.call('StopPodSandbox', { pod_sandbox_id: stubbornPod });
        await client.call('RemovePodSandbox', { pod_sandbox_id: stubbornPod });
        await manager.stopUnit(slice);
      }
    });
  }
});
