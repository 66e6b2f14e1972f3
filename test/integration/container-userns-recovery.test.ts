// A crash must not strand what a hostUsers: false container holds on the host:
// the pod's pinned user namespace, the idmapped volume and the image volume
// berth mounted under the container's bundle, and the image that volume holds.
// berthd is killed (SIGKILL) once in the middle of a CreateContainer (its runtime
// handler waits in `create`) and once while such a container runs; each time the
// restarted berthd must finish the job: the half-made container is undone, the
// running one keeps working and is removed whole.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { testNetwork } from '../support/test-network';
import { mountsUnder, podConfig, startContainerInPod, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-usr-recover', bridge: 'bt-usrrec0', subnet: '10.86.12.0/24' });
const HOST_ID = 427680;
const MAPPING = { container_id: 0, host_id: HOST_ID, length: 65536 };
const USERNS = { network: 'POD', pid: 'CONTAINER', ipc: 'POD', userns_options: { mode: 'POD', uids: [MAPPING], gids: [MAPPING] } };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

describe('a user-namespaced container with idmapped and image volumes across a crash of berthd', () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let image = '';
  let volumeImage = '';
  let supported: { ok: boolean; reason: string } = { ok: false, reason: '' };
  const scratch = mkdtempSync('/tmp/berth-usr-recover-');
  const gate = join(scratch, 'hold-create');
  const waiting = join(scratch, 'create-waiting');
  let heldWrapper = 0;

  const call = <M extends Parameters<SandboxBerthd['berthd']['client']['call']>[0]>(method: M, req: unknown) => s.berthd.client.call(method, req as never);
  const containersDir = () => join(s.berthd.root, 'containers');

  async function userNamespacedPod(name: string) {
    const config = podConfig(name, {
      log_directory: join(scratch, `${name}-logs`),
      linux: { cgroup_parent: '', security_context: { namespace_options: USERNS }, sysctls: {} },
    } as never);
    const { pod_sandbox_id } = await call('RunPodSandbox', { config, runtime_handler: 'gatedrunc' });
    return { podId: pod_sandbox_id, sandboxConfig: config };
  }

  function volumes(volume: string) {
    return {
      linux: { resources: {}, security_context: { namespace_options: USERNS } },
      mounts: [
        { container_path: '/vol', host_path: volume, readonly: false, propagation: 'PROPAGATION_PRIVATE' },
        { container_path: '/imgvol', image: { image: volumeImage }, image_sub_path: 'data', readonly: true, propagation: 'PROPAGATION_PRIVATE' },
      ],
    };
  }

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/usr-recover:v1')).reference;
    volumeImage = (await pushBusyboxImage(registry, 'test/usr-recover-volume:v1', { extraLayers: [[{ path: 'data/', type: 'dir' }, { path: 'data/greeting', type: 'file', content: 'from the volume image\n' }]] })).reference;
    // A runtime handler whose `create` waits (bounded, 60 s) while the gate file exists, so
    // the test can kill berthd while a CreateContainer is inside the runtime.
    const wrapper = join(scratch, 'gatedrunc');
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        'for a in "$@"; do',
        `  if [ "$a" = create ] && [ -e ${gate} ]; then`,
        `    echo $$ > ${waiting}`,
        `    i=0; while [ -e ${gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`,
        '    break',
        '  fi',
        'done',
        'exec runc "$@"',
        '',
      ].join('\n'),
    );
    chmodSync(wrapper, 0o755);
    s = await startSandboxBerthd(NET, {
      tomlTail: `[oci.runtimes.gatedrunc]\npath = ${JSON.stringify(wrapper)}\nroot = ${JSON.stringify(join(scratch, 'gatedrunc-root'))}\n`,
    });
    // berthd's root and state live in a 0700 temp dir; idmapped mounts need the mapped ids to reach them.
    chmodSync(s.berthd.dir, 0o711);
    await call('PullImage', { image: { image } });
    await call('PullImage', { image: { image: volumeImage } });
    const host = JSON.parse((await call('Status', { verbose: true })).info.host) as { mountFeatures: { userNamespaces: { supported: boolean; reason?: string } } };
    supported = { ok: host.mountFeatures.userNamespaces.supported, reason: host.mountFeatures.userNamespaces.reason ?? '' };
  });

  after(async () => {
    rmSync(gate, { force: true });
    if (heldWrapper > 0) killQuietly(heldWrapper);
    try {
      if (s?.berthd) {
        const { containers } = await call('ListContainers', {}).catch(() => ({ containers: [] as { id: string }[] }));
        for (const c of containers) await call('RemoveContainer', { container_id: c.id }).catch(() => undefined);
      }
    } finally {
      await s?.cleanup();
      await registry?.stop();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('a CreateContainer cut short by a crash is undone at the next start: no idmapped or image volume left mounted, the image free, the pod removable', async (t) => {
    if (!supported.ok) return t.skip(`no user namespaces here: ${supported.reason}`);
    const volume = join(scratch, 'volume-create');
    mkdirSync(volume);
    const { podId, sandboxConfig } = await userNamespacedPod('crash-in-create');
    writeFileSync(gate, '');
    const creating = call('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name: 'half-made', attempt: 0 }, image: { image }, command: ['sleep', '600'], log_path: 'half-made.log', ...volumes(volume) },
      sandbox_config: sandboxConfig,
    }).catch((e: Error) => e);
    for (let i = 0; i < 400 && !existsSync(waiting); i++) await sleep(50);
    assert.ok(existsSync(waiting), 'the create reached the runtime');
    heldWrapper = Number(readFileSync(waiting, 'utf8').trim());
    assert.ok(mountsUnder(containersDir()).length >= 2, 'the volumes were prepared before the runtime was called');

    await s.berthd.stop('SIGKILL');
    assert.ok((await creating) instanceof Error, 'the caller saw the crash');
    rmSync(gate, { force: true });
    // The runtime never creates the container: the waiting create goes, and conmon with it.
    killQuietly(heldWrapper);
    heldWrapper = 0;

    await s.berthd.start();
    assert.deepEqual((await call('ListContainers', {})).containers, [], 'the half-made container is not listed');
    assert.deepEqual(mountsUnder(containersDir()), [], 'nothing of it is mounted');
    assert.deepEqual(readdirSync(containersDir()), [], 'its bundle is gone');
    // Nothing holds the volume's image any more.
    await call('RemoveImage', { image: { image: volumeImage } });
    await call('PullImage', { image: { image: volumeImage } });

    await call('StopPodSandbox', { pod_sandbox_id: podId });
    await call('RemovePodSandbox', { pod_sandbox_id: podId });
    assert.deepEqual(readdirSync(join(s.nsDir, 'user')), [], 'the user namespace pin went with the pod');
    assert.deepEqual(mountsUnder(s.nsDir).filter((l) => !l.split(' ')[4].endsWith('/ns')), []);
  });

  test('a running container survives a crash with its volumes, and is removed whole afterwards', async (t) => {
    if (!supported.ok) return t.skip(`no user namespaces here: ${supported.reason}`);
    const volume = join(scratch, 'volume-run');
    mkdirSync(volume);
    const { podId, sandboxConfig } = await userNamespacedPod('crash-while-running');
    const id = await startContainerInPod(s.berthd, { podId, sandboxConfig, image, name: 'survivor', command: ['sleep', '600'], extra: volumes(volume) });
    assert.ok(mountsUnder(containersDir()).length >= 1, 'its rootfs is mounted');

    await s.berthd.stop('SIGKILL');
    await s.berthd.start();
    assert.equal((await call('ContainerStatus', { container_id: id })).status!.state, 'CONTAINER_RUNNING');
    const r = await call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'cat /imgvol/greeting; echo after > /vol/written; id -u'], timeout: '20' });
    assert.equal(r.exit_code, 0, r.stderr.toString());
    assert.deepEqual(r.stdout.toString().trim().split('\n'), ['from the volume image', '0']);
    assert.equal(readFileSync(join(volume, 'written'), 'utf8'), 'after\n');
    // The image volume still holds its image after the restart.
    await assert.rejects(call('RemoveImage', { image: { image: volumeImage } }));

    await call('StopContainer', { container_id: id, timeout: '0' });
    await call('RemoveContainer', { container_id: id });
    assert.deepEqual(mountsUnder(containersDir()), []);
    await call('StopPodSandbox', { pod_sandbox_id: podId });
    await call('RemovePodSandbox', { pod_sandbox_id: podId });
    assert.deepEqual(readdirSync(join(s.nsDir, 'user')), []);
    await call('RemoveImage', { image: { image: volumeImage } });
  });
});
