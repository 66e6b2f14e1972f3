// What a crash leaves in berth's root is collected at the next start, in the
// background: layer directories no row owns, interrupted unpacks and blob
// writes, blobs nothing needs, container bundles no record owns. A leftover with something mounted in it is never
// removed (a recursive removal would delete what the mount shows), and says so; a bundle a removal renamed away
// (`.removed-`) has its mounts detached first and goes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { BerthDatabase } from '../../runtime/store/database';
import { pushBusyboxImage, type PushedImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { mountsUnder, podConfig, processGone, startContainerInPod } from './sandbox-fixture';

async function waitForLog(berthd: BerthdProcess, pattern: RegExp, limitMs = 60_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!pattern.test(berthd.logs())) {
    if (Date.now() > deadline) throw new Error(`berthd never logged ${pattern}:\n${berthd.logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('leftovers of a crash in the store', () => {
  const native = loadNative();
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image: PushedImage;
  const hostDir = mkdtempSync('/tmp/berth-leftover-host-');
  const logDir = mkdtempSync('/tmp/berth-leftover-logs-');
  const mounts: string[] = [];

  before(async () => {
    registry = await startRegistry();
    image = await pushBusyboxImage(registry, 'leftovers/app:v1');
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image: image.reference } });
  });
  after(async () => {
    for (const target of mounts.reverse()) {
      try {
        native.umount2(target, native.mountFlags.MNT_DETACH);
      } catch {
        // not mounted
      }
    }
    await berthd?.cleanup();
    await registry?.stop();
    rmSync(hostDir, { recursive: true, force: true });
    rmSync(logDir, { recursive: true, force: true });
  });

  test('at start, unowned layer and container directories, temporary files and unneeded blobs go; a mounted leftover stays and is logged', async () => {
    await berthd.stop('SIGKILL');
    const layers = join(berthd.root, 'layers');
    const ownedLayers = readdirSync(layers).sort();
    const orphan = join(layers, 'deadbeefdead');
    mkdirSync(join(orphan, 'diff', 'etc'), { recursive: true });
    writeFileSync(join(orphan, 'diff', 'etc', 'passwd'), 'root:x:0:0::/:/bin/sh\n');
    const interrupted = join(layers, 'tmp-0123456789ab');
    mkdirSync(join(interrupted, 'diff'), { recursive: true });
    writeFileSync(join(berthd.root, 'content', 'tmp', `${'e'.repeat(64)}-0123456789ab`), 'partial');
    const unneededBlob = join(berthd.root, 'content', 'sha256', randomBytes(32).toString('hex'));
    writeFileSync(unneededBlob, 'nobody needs this');
    // A leftover with a bind mount inside: removing it recursively would delete the host's files.
    writeFileSync(join(hostDir, 'host-file'), 'keep me');
    const mounted = join(layers, 'mountedabcde', 'diff');
    mkdirSync(mounted, { recursive: true });
    native.mount(hostDir, mounted, null, native.mountFlags.MS_BIND);
    mounts.push(mounted);

    // Container bundles no record owns: one plain, one whose rootfs is still a mount point.
    const containers = join(berthd.root, 'containers');
    const strayBundle = join(containers, 'a'.repeat(64));
    mkdirSync(join(strayBundle, 'upper', 'var'), { recursive: true });
    writeFileSync(join(strayBundle, 'config.json'), '{}');
    writeFileSync(join(strayBundle, 'upper', 'var', 'data'), 'written by a container');
    const mountedBundle = join(containers, 'b'.repeat(64));
    const mountedRootfs = join(mountedBundle, 'rootfs');
    mkdirSync(mountedRootfs, { recursive: true });
    native.mount(hostDir, mountedRootfs, null, native.mountFlags.MS_BIND);
    mounts.push(mountedRootfs);

    await berthd.start();
    // Served before the collection is over or not: it runs in the background.
    await berthd.client.call('Version', { version: '0.1.0' });
    await waitForLog(berthd, /collected leftovers of interrupted pulls and collections/);
    await waitForLog(berthd, /collected container directories no container owns/);

    assert.ok(!existsSync(strayBundle), 'the bundle no container record owns');
    assert.ok(existsSync(join(mountedRootfs, 'host-file')), 'the bundle whose rootfs is mounted, and what the mount shows');
    assert.match(berthd.logs(), /container directory no container owns has something mounted in it/);

    assert.ok(!existsSync(orphan), 'the layer directory no row owns');
    assert.ok(!existsSync(interrupted), 'the interrupted unpack');
    assert.deepEqual(readdirSync(join(berthd.root, 'content', 'tmp')), [], 'the interrupted blob write');
    assert.ok(!existsSync(unneededBlob), 'the blob nothing needs');
    assert.ok(existsSync(join(mounted, 'host-file')), 'the mounted leftover and what its mount shows');
    assert.deepEqual(readdirSync(hostDir), ['host-file'], 'nothing of the host directory was removed through either mount');
    assert.match(berthd.logs(), /mountedabcde[^\n]*something mounted in it|something mounted in it[^\n]*mountedabcde/);
    for (const dir of ownedLayers) assert.ok(existsSync(join(layers, dir)), `the image's layer ${dir}`);
    const status = await berthd.client.call('ImageStatus', { image: { image: image.reference } });
    assert.equal(status.image?.id, image.imageId);
  });

  test('RemoveContainer answered and berthd killed at once: after the next start nothing of the container is left (row, process, monitor, runc state, cgroups, mounts, bundle, attach link, exit file)', async () => {
    const sandboxConfig = podConfig('removed-then-killed', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    const id = await startContainerInPod(berthd, { podId, sandboxConfig, image: image.reference, name: 'removed', command: ['sleep', '600'] });
    const containers = join(berthd.root, 'containers');
    const runcState = join(berthd.state, 'runc', id);
    const { cgroup_paths: cgroupPaths } = JSON.parse(readFileSync(join(runcState, 'state.json'), 'utf8')) as { cgroup_paths: Record<string, string> };
    const cgroups = [...new Set(Object.values(cgroupPaths))];
    const db = (): BerthDatabase => new BerthDatabase(join(berthd.root, 'berth.db'));
    const before = db();
    const row = before.db.prepare('SELECT pid, conmon_pid FROM containers WHERE id = ?').get(id) as { pid: number; conmon_pid: number };
    before.close();
    // What a removal interrupted after its answer leaves at worst: its renamed bundle, here with a mount still in it.
    writeFileSync(join(hostDir, 'host-file'), 'keep me');
    const interrupted = join(containers, `.removed-${'d'.repeat(64)}-0badf00d`);
    mkdirSync(join(interrupted, 'upper', 'tmp'), { recursive: true });
    writeFileSync(join(interrupted, 'upper', 'tmp', 'data'), 'written by a container');
    mkdirSync(join(interrupted, 'rootfs'));
    native.mount(hostDir, join(interrupted, 'rootfs'), null, native.mountFlags.MS_BIND);
    mounts.push(join(interrupted, 'rootfs'));

    await berthd.client.call('RemoveContainer', { container_id: id });
    await berthd.stop('SIGKILL');
    const collectedBefore = berthd.logs().split('collected container directories no container owns').length;
    await berthd.start();
    // This start's collection (an earlier start logged the same line): it always has the interrupted removal to remove.
    const deadline = Date.now() + 60_000;
    while (berthd.logs().split('collected container directories no container owns').length === collectedBefore) {
      if (Date.now() > deadline) throw new Error(`berthd never collected the removed bundles:\n${berthd.logs()}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const { containers: listed } = await berthd.client.call('ListContainers', {});
    assert.ok(!listed.some((c) => c.id === id), 'ListContainers');
    const after = db();
    assert.equal((after.db.prepare('SELECT COUNT(*) AS n FROM containers WHERE id = ?').get(id) as { n: number }).n, 0, 'its row');
    after.close();
    assert.ok(processGone(row.pid), 'the container process');
    assert.ok(processGone(row.conmon_pid), 'its conmon');
    assert.ok(!existsSync(runcState), "runc's state of it");
    for (const path of cgroups) assert.ok(!existsSync(path), `its cgroup ${path}`);
    assert.deepEqual(readdirSync(containers).filter((name) => name.includes(id) || name.startsWith('.removed-')), [], 'its bundle, renamed or not, and the interrupted removal\'s');
    assert.deepEqual(mountsUnder(join(containers, id)), [], 'mounts of its bundle');
    assert.deepEqual(mountsUnder(join(containers, '.removed-')), [], 'mounts of removed bundles');
    assert.deepEqual(readdirSync(hostDir), ['host-file'], 'nothing of the host directory was removed through the mount');
    assert.ok(!existsSync(join(berthd.state, 'attach', id)), 'its attach link');
    assert.ok(!existsSync(join(berthd.state, 'exits', id)), 'its exit record');
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('a container whose record a crash lost: its conmon is killed, its runtime container deleted, its rootfs unmounted and its bundle removed', async () => {
    const sandboxConfig = podConfig('leftover', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    const id = await startContainerInPod(berthd, { podId, sandboxConfig, image: image.reference, name: 'lost', command: ['sleep', '600'] });
    const bundle = join(berthd.root, 'containers', id);
    const runcState = join(berthd.state, 'runc', id);
    assert.ok(existsSync(runcState));

    await berthd.stop('SIGKILL');
    const db = new BerthDatabase(join(berthd.root, 'berth.db'));
    const row = db.db.prepare('SELECT pid, conmon_pid FROM containers WHERE id = ?').get(id) as { pid: number; conmon_pid: number };
    // As if berthd had died after runc created the container and before its record was saved.
    db.db.prepare('DELETE FROM containers WHERE id = ?').run(id);
    db.close();
    assert.ok(!processGone(row.conmon_pid) && !processGone(row.pid), 'conmon and the container outlived berthd');

    await berthd.start();
    await waitForLog(berthd, new RegExp(`collected container directories no container owns[^\\n]*${id}|${id}[^\\n]*collected container directories no container owns`));
    assert.ok(processGone(row.conmon_pid), 'the orphaned conmon');
    assert.ok(processGone(row.pid), 'the container process, with its runtime container');
    assert.ok(!existsSync(runcState), "runc's state of it");
    assert.deepEqual(mountsUnder(bundle), [], 'its rootfs mount');
    assert.ok(!existsSync(bundle), 'its bundle');
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  });
});
