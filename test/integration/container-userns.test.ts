// Issue 16's container features through a real berthd, runc 1.1 and the CRI:
// a hostUsers: false pod whose container runs in the pod's user namespace on
// an idmapped rootfs and volume; a recursive read-only volume whose submount
// cannot be written; an image volume with a sub path that keeps its image from
// removal. Each test skips on a host whose kernel cannot, saying why.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { testNetwork } from '../support/test-network';
import { podConfig, startContainerInPod, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-ctr-userns', bridge: 'bt-cusr0', subnet: '10.86.6.0/24' });
const native = loadNative();
const HOST_ID = 362144;
const MAPPING = { container_id: 0, host_id: HOST_ID, length: 65536 };
const FAILED_PRECONDITION = 9;
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

interface HostSupport {
  mountFeatures: { userNamespaces: { supported: boolean; reason?: string }; recursiveReadOnly: { supported: boolean; reason?: string } };
}

describe('user namespaces, recursive read-only and image volumes over CRI', () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let image = '';
  let host: HostSupport;
  const scratch = mkdtempSync('/tmp/berth-ctr-userns-');

  const call = <M extends Parameters<SandboxBerthd['berthd']['client']['call']>[0]>(method: M, req: unknown) => s.berthd.client.call(method, req as never);

  async function pod(name: string, userns: boolean) {
    const config = podConfig(name, {
      log_directory: join(scratch, `${name}-logs`),
      linux: {
        cgroup_parent: '',
        security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', ...(userns ? { userns_options: { mode: 'POD', uids: [MAPPING], gids: [MAPPING] } } : {}) } },
        sysctls: {},
      },
    } as never);
    const { pod_sandbox_id } = await call('RunPodSandbox', { config });
    return { podId: pod_sandbox_id, sandboxConfig: config };
  }

  async function exec(id: string, script: string): Promise<{ out: string; code: number }> {
    const r = await call('ExecSync', { container_id: id, cmd: ['sh', '-c', script], timeout: '20' });
    return { out: `${r.stdout.toString()}${r.stderr.toString()}`, code: r.exit_code };
  }

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/userns:v1', { extraLayers: [[{ path: 'data/', type: 'dir' }, { path: 'data/greeting', type: 'file', content: 'from the image\n' }]] })).reference;
    s = await startSandboxBerthd(NET);
    await call('PullImage', { image: { image } });
    host = JSON.parse((await call('Status', { verbose: true })).info.host) as HostSupport;
    // berthd's root and state live in this test's 0700 temp dir; on a node they are under /var/lib and /run.
    chmodSync(s.berthd.dir, 0o711);
  });

  after(async () => {
    try {
      const { containers } = await call('ListContainers', {});
      for (const c of containers) await call('RemoveContainer', { container_id: c.id });
    } finally {
      await s?.cleanup();
      await registry?.stop();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('Status reports the runtime handler features the host really has, for the default handler ("") and each named one', async () => {
    const status = await call('Status', {});
    assert.deepEqual(status.runtime_handlers.map((h) => h.name).slice(0, 2), ['', 'runc']);
    for (const handler of status.runtime_handlers) {
      assert.equal(handler.features!.user_namespaces, host.mountFeatures.userNamespaces.supported, handler.name);
      assert.equal(handler.features!.recursive_read_only_mounts, host.mountFeatures.recursiveReadOnly.supported, handler.name);
    }
  });

  test("a hostUsers: false container runs as the mapped host uid, its files look root-owned inside, and its volume keeps the container's ids on disk", async (t) => {
    if (!host.mountFeatures.userNamespaces.supported) return t.skip(`no user namespaces here: ${host.mountFeatures.userNamespaces.reason}`);
    const volume = join(scratch, 'volume');
    mkdirSync(volume);
    writeFileSync(join(volume, 'from-host'), 'host\n');
    const { podId, sandboxConfig } = await pod('userns-pod', true);
    const id = await startContainerInPod(s.berthd, {
      podId, sandboxConfig, image, name: 'userns-ctr', command: ['sh', '-c', 'exec sleep 600'],
      extra: {
        linux: { resources: {}, security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', userns_options: { mode: 'POD', uids: [MAPPING], gids: [MAPPING] } } } },
        mounts: [{ container_path: '/vol', host_path: volume, readonly: false, propagation: 'PROPAGATION_PRIVATE' }],
      },
    });
    const inside = await exec(id, 'cat /proc/self/uid_map; id -u; stat -c "%u:%g" / /bin/busybox /vol/from-host; echo written > /vol/from-ctr; echo root > /rootfs-file');
    assert.equal(inside.code, 0, inside.out);
    const lines = inside.out.trim().split('\n').map((l) => l.trim());
    assert.deepEqual(lines[0].split(/\s+/), ['0', String(HOST_ID), '65536']);
    assert.deepEqual(lines.slice(1), ['0', '0:0', '0:0', '0:0']);

    const pid = (await call('ContainerStatus', { container_id: id, verbose: true })).info.info;
    const hostPid = (JSON.parse(pid) as { pid: number }).pid;
    const uidLine = readFileSync(`/proc/${hostPid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
    assert.equal(uidLine.split(/\s+/)[1], String(HOST_ID), 'the container root is the mapped host uid');
    assert.notEqual(native.namespaceOwner(`/proc/${hostPid}/ns/pid`), statSync('/proc/self/ns/user').ino, "the container's PID namespace belongs to the pod's user namespace");

    // An idmapped volume keeps the container's ids on disk: root inside writes uid 0, as without a user namespace.
    assert.deepEqual([statSync(join(volume, 'from-ctr')).uid, statSync(join(volume, 'from-ctr')).gid], [0, 0]);
    // The rootfs' upper dir holds host ids: what the container's root wrote is the mapped uid's.
    const bundle = (JSON.parse(pid) as { bundle: string }).bundle;
    assert.equal(statSync(join(bundle, 'upper', 'rootfs-file')).uid, HOST_ID);

    await call('RemoveContainer', { container_id: id });
    await call('StopPodSandbox', { pod_sandbox_id: podId });
    await call('RemovePodSandbox', { pod_sandbox_id: podId });
    assert.equal(readFileSync(join(volume, 'from-host'), 'utf8'), 'host\n', 'the volume is intact after removal');
    assert.deepEqual(readdirSync(join(s.nsDir, 'user')), []);
  });

  test('a container whose user namespace options differ from its pod is INVALID_ARGUMENT', async (t) => {
    if (!host.mountFeatures.userNamespaces.supported) return t.skip(`no user namespaces here: ${host.mountFeatures.userNamespaces.reason}`);
    const { podId, sandboxConfig } = await pod('userns-mismatch', true);
    const other = { mode: 'POD', uids: [{ ...MAPPING, host_id: HOST_ID + 65536 }], gids: [MAPPING] };
    const err = await call('CreateContainer', {
      pod_sandbox_id: podId, sandbox_config: sandboxConfig,
      config: { metadata: { name: 'mismatch', attempt: 0 }, image: { image }, command: ['true'], linux: { security_context: { namespace_options: { userns_options: other } } } },
    }).then(() => assert.fail('accepted'), (e: Error) => e);
    assert.equal(grpcCode(err), INVALID_ARGUMENT);
    assert.match(err.message, /userns_options: must be the pod's/);
  });

  test('a recursive read-only volume is read-only down to its submounts; the CRI rules on it are enforced', async (t) => {
    if (!host.mountFeatures.recursiveReadOnly.supported) return t.skip(`no recursive read-only mounts here: ${host.mountFeatures.recursiveReadOnly.reason}`);
    const volume = join(scratch, 'rro');
    mkdirSync(join(volume, 'tmpfs'), { recursive: true });
    native.mount('tmpfs', join(volume, 'tmpfs'), 'tmpfs', 0, 'size=1m');
    t.after(() => {
      // The test itself unmounts it on success; this is for a failure before that.
      if (readFileSync('/proc/self/mountinfo', 'utf8').includes(join(volume, 'tmpfs'))) native.umount2(join(volume, 'tmpfs'), native.mountFlags.MNT_DETACH);
    });
    const { podId, sandboxConfig } = await pod('rro-pod', false);
    const rro = { container_path: '/mnt', host_path: volume, readonly: true, recursive_read_only: true, propagation: 'PROPAGATION_PRIVATE' };
    const id = await startContainerInPod(s.berthd, { podId, sandboxConfig, image, name: 'rro-ctr', command: ['sh', '-c', 'exec sleep 600'], extra: { linux: { resources: {}, security_context: {} }, mounts: [rro] } });
    const r = await exec(id, 'touch /mnt/tmpfs/file; echo "code $?"');
    assert.match(r.out, /Read-only file system/);
    assert.match(r.out, /code 1/);
    writeFileSync(join(volume, 'tmpfs', 'from-host'), 'x');
    assert.equal((await exec(id, 'cat /mnt/tmpfs/from-host')).out, 'x', 'it is the same tmpfs, seen read-only');

    for (const [bad, message] of [
      [{ ...rro, readonly: false }, /recursive_read_only: needs readonly to be true/],
      [{ ...rro, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }, /recursive_read_only: needs propagation PROPAGATION_PRIVATE/],
    ] as const) {
      const err = await call('CreateContainer', {
        pod_sandbox_id: podId, sandbox_config: sandboxConfig,
        config: { metadata: { name: `rro-bad-${String(message).length}`, attempt: 0 }, image: { image }, command: ['true'], mounts: [bad] },
      }).then(() => assert.fail('accepted'), (e: Error) => e);
      assert.equal(grpcCode(err), INVALID_ARGUMENT);
      assert.match(err.message, message);
    }
    assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(`${id}/mounts`), false, "once created, the container's own mount namespace holds the mount; berthd's copy is gone");
    // So the host can take its volume apart while the container runs, as critest and the kubelet do.
    native.umount2(join(volume, 'tmpfs'), native.mountFlags.MNT_DETACH);
    rmSync(volume, { recursive: true });
    await call('RemoveContainer', { container_id: id });
  });

  test('an image volume mounts a sub path of an image read-only, and holds the image until the container is removed', async (t) => {
    const { podId, sandboxConfig } = await pod('imgvol-pod', false);
    const volume = { container_path: '/img', image: { image }, image_sub_path: 'data', readonly: true, propagation: 'PROPAGATION_PRIVATE' };
    const id = await startContainerInPod(s.berthd, { podId, sandboxConfig, image, name: 'imgvol-ctr', command: ['sh', '-c', 'exec sleep 600'], extra: { linux: { resources: {}, security_context: {} }, mounts: [volume] } });
    const r = await exec(id, 'cat /img/greeting; touch /img/x; echo "code $?"');
    assert.match(r.out, /^from the image\n/);
    assert.match(r.out, /Read-only file system/);

    const refused = await call('RemoveImage', { image: { image } }).then(() => assert.fail('RemoveImage removed an image a volume uses'), (e: Error) => e);
    assert.equal(grpcCode(refused), FAILED_PRECONDITION);
    assert.match(refused.message, new RegExp(`in use as a volume by container ${id}`));

    for (const [bad, code, message] of [
      [{ ...volume, image: { image: 'localhost:1/not/pulled:v0' } }, NOT_FOUND, /config\.mounts\[0\]\.image: image "localhost:1\/not\/pulled:v0" is not present/],
      [{ ...volume, image_sub_path: '../etc' }, INVALID_ARGUMENT, /image_sub_path: "\.\.\/etc" may not contain "\.\."/],
      [{ ...volume, image_sub_path: 'bin/sh/x' }, INVALID_ARGUMENT, /image_sub_path: .*(symlink|not a directory)/],
    ] as const) {
      const err = await call('CreateContainer', {
        pod_sandbox_id: podId, sandbox_config: sandboxConfig,
        config: { metadata: { name: `imgvol-bad-${code}-${String(message).length}`, attempt: 0 }, image: { image }, command: ['true'], mounts: [bad] },
      }).then(() => assert.fail(`accepted ${JSON.stringify(bad)}`), (e: Error) => e);
      assert.equal(grpcCode(err), code, err.message);
      assert.match(err.message, message);
    }

    assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(`${id}/mounts`), false, "only the container's mount namespace holds the image volume");
    await call('RemoveContainer', { container_id: id });
    await call('RemoveImage', { image: { image } });
    t.after(() => call('PullImage', { image: { image } }));
  });
});
