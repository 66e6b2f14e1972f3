// Images whose /etc/passwd is hostile, through a real berthd over CRI: a FIFO
// (a read that never returns), the character device of /dev/zero (endless), a
// symlink to a /dev/zero the image ships, and 64 MiB of text. Each image says
// User "daemon", so CreateContainer must read the file: it answers with a clear
// INVALID_ARGUMENT naming /etc/passwd, berthd keeps answering Version
// meanwhile, and nothing of the container is left.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import type { TarEntry } from '../support/tar-writer';
import { podConfig } from './sandbox-fixture';

const INVALID_ARGUMENT = 3;

describe('an image whose /etc/passwd is hostile', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  const logDir = mkdtempSync('/tmp/berth-hostile-logs-');

  before(async () => {
    registry = await startRegistry();
    // 64 MiB of passwd lines compress far beyond the default ratio limit; that limit is not what is tested here.
    berthd = await startBerthd({ extraToml: '[image]\nmax_compression_ratio = 100000' });
    sandboxConfig = podConfig('hostile', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
  });

  after(async () => {
    if (berthd) {
      try {
        const { containers } = await berthd.client.call('ListContainers', {});
        for (const c of containers) await berthd.client.call('RemoveContainer', { container_id: c.id });
        await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
        await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
      } catch {
        // berthd may be the casualty of a failed test; cleanup() still ends it
      }
      await berthd.cleanup();
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  /** Pushes and pulls busybox with `passwd` entries on top and USER daemon; the image reference. */
  async function imageWith(name: string, passwd: TarEntry[]): Promise<string> {
    const pushed = await pushBusyboxImage(registry, `hostile/${name}:v1`, { extraLayers: [passwd], config: { User: 'daemon' } });
    await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    return pushed.reference;
  }

  /** CreateContainer, with Version asked every 20 ms while it runs; every Version must be answered. */
  async function createWhileAskingVersion(image: string, name: string): Promise<{ created: Promise<string>; versions: number }> {
    let settled = false;
    const created = berthd.client
      .call('CreateContainer', {
        pod_sandbox_id: podId,
        config: { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '60'], log_path: `${name}.log`, linux: {} },
        sandbox_config: sandboxConfig,
      } as never, { timeoutMs: 30_000 })
      .then((r) => r.container_id)
      .finally(() => (settled = true));
    created.catch(() => undefined);
    let versions = 0;
    do {
      const v = await berthd.client.call('Version', { version: '0.1.0' }, { timeoutMs: 5_000 });
      assert.equal(v.runtime_name, 'berth');
      versions++;
      await new Promise((r) => setTimeout(r, 20));
    } while (!settled);
    return { created, versions };
  }

  async function assertRefused(image: string, name: string, message: RegExp): Promise<void> {
    const { created, versions } = await createWhileAskingVersion(image, name);
    await assert.rejects(created, (err) => {
      assert.equal(grpcCode(err), INVALID_ARGUMENT, String(err));
      assert.match((err as Error).message, /\/etc\/passwd/);
      assert.match((err as Error).message, message);
      return true;
    });
    assert.ok(versions >= 1);
    const { containers } = await berthd.client.call('ListContainers', {});
    assert.deepEqual(containers.filter((c) => c.metadata?.name === name), [], 'the failed create is undone');
    assert.equal((await berthd.client.call('Version', { version: '0.1.0' }, { timeoutMs: 5_000 })).runtime_name, 'berth');
  }

  test('a regular /etc/passwd naming the user works (the control)', async () => {
    const image = await imageWith('control', [{ path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/:/bin/sh\n' }]);
    const { created } = await createWhileAskingVersion(image, 'control');
    const id = await created;
    const status = await berthd.client.call('ContainerStatus', { container_id: id, verbose: true });
    assert.equal(JSON.parse(status.info.info).runtimeSpec.process.user.uid, 1);
    await berthd.client.call('RemoveContainer', { container_id: id });
  });

  test('a FIFO is refused at once and berthd keeps answering', async () => {
    const image = await imageWith('fifo', [{ path: 'etc/passwd', type: 'fifo', mode: 0o644 }]);
    await assertRefused(image, 'fifo', /FIFO/);
  });

  test('the character device of /dev/zero is refused without reading it', async () => {
    const image = await imageWith('chardev', [{ path: 'etc/passwd', type: 'char', devmajor: 1, devminor: 5, mode: 0o644 }]);
    await assertRefused(image, 'chardev', /character device/);
  });

  test('a symlink to the image\'s own /dev/zero is refused, not followed', async () => {
    const image = await imageWith('symlink', [
      { path: 'dev/zero', type: 'char', devmajor: 1, devminor: 5, mode: 0o666 },
      { path: 'etc/passwd', type: 'symlink', linkname: '/dev/zero' },
    ]);
    await assertRefused(image, 'symlink', /symbolic link/);
  });

  test('a 64 MiB /etc/passwd is refused over the 4 MiB cap', async () => {
    const line = 'user:x:1000:1000:a user with a long gecos field to fill the file quickly:/home/user:/bin/sh\n';
    const content = Buffer.alloc(64 * 1024 * 1024, line);
    const image = await imageWith('huge', [{ path: 'etc/passwd', type: 'file', content }]);
    await assertRefused(image, 'huge', /larger than 4194304 bytes/);
  });
});
