// Container root filesystems from image layers: overlay mounts with many layers,
// and layers a container holds surviving RemoveImage of their image.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { loadNative } from '../../native';
import { parseImageReference } from '../../runtime/image/image-reference';
import { Images } from '../../runtime/image/images';
import { OverlayRootfsMounter } from '../../runtime/image/rootfs-mounter';
import { BerthDatabase } from '../../runtime/store/database';
import { buildConfig } from '../../shim/config';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';

describe('overlay root filesystems', () => {
  const dir = mkdtempSync('/tmp/berth-rootfs-');
  const mounter = new OverlayRootfsMounter();
  const target = join(dir, 'rootfs');
  after(() => {
    mounter.unmount(target);
    rmSync(dir, { recursive: true, force: true });
  });

  test('an image with 200 layers in long paths mounts (beyond one page of mount options)', () => {
    const layers: string[] = [];
    for (let i = 0; i < 200; i++) {
      const layer = join(dir, `a-rather-long-layer-directory-name-to-overflow-the-page-${String(i).padStart(3, '0')}`, 'diff');
      mkdirSync(layer, { recursive: true });
      writeFileSync(join(layer, `file-${i}`), `layer ${i}`);
      writeFileSync(join(layer, 'top'), `layer ${i}`);
      layers.push(layer);
    }
    // The base layer has a file the top layer whites out.
    writeFileSync(join(layers[0], 'hidden'), 'base');
    loadNative().mknod(join(layers[199], 'hidden'), loadNative().fileTypes.S_IFCHR, 0, 0);
    mounter.mount({ layerDirs: layers, upperDir: join(dir, 'upper'), workDir: join(dir, 'work'), target });
    assert.equal(readFileSync(join(target, 'file-0'), 'utf8'), 'layer 0');
    assert.equal(readFileSync(join(target, 'top'), 'utf8'), 'layer 199', 'the last layer is on top');
    assert.ok(!existsSync(join(target, 'hidden')), 'a whiteout hides the lower file');
    writeFileSync(join(target, 'written'), 'upper');
    assert.equal(readFileSync(join(dir, 'upper', 'written'), 'utf8'), 'upper');
  });

  test('unmount does not report success while mounts are still stacked on the target', () => {
    const stacked = join(dir, 'stacked');
    const source = join(dir, 'stack-source');
    mkdirSync(stacked);
    mkdirSync(source);
    const native = loadNative();
    for (let i = 0; i < 20; i++) native.mount(source, stacked, null, native.mountFlags.MS_BIND);
    try {
      assert.throws(() => mounter.unmount(stacked), /still a mount point/);
    } finally {
      for (let i = 0; i < 20; i++) {
        try {
          native.umount2(stacked, native.mountFlags.MNT_DETACH);
        } catch {
          break;
        }
      }
    }
    mounter.unmount(stacked);
  });

  test('unmount is idempotent', () => {
    mounter.unmount(target);
    assert.ok(!existsSync(join(target, 'file-0')));
    mounter.unmount(target);
    mounter.unmount(join(dir, 'never-mounted'));
  });
});

describe('overlay options a layer cannot override', () => {
  const dir = mkdtempSync('/tmp/berth-rootfs-redirect-');
  const native = loadNative();
  const classicOnly = { ...native, mountOverlay: () => { throw Object.assign(new Error('fsopen: ENOSYS'), { errno: 38 }); } };
  const targets: string[] = [];
  after(() => {
    for (const target of targets) new OverlayRootfsMounter().unmount(target);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [api, mounter] of [['new mount API', new OverlayRootfsMounter()], ['mount(2)', new OverlayRootfsMounter(classicOnly)]] as const) {
    test(`a trusted.overlay.redirect on a layer directory is not followed (${api})`, () => {
      const base = join(dir, api.replace(/\W/g, ''));
      const lower = join(base, 'lower', 'diff');
      const upperLayer = join(base, 'top', 'diff');
      mkdirSync(join(lower, 'secret'), { recursive: true });
      writeFileSync(join(lower, 'secret', 'file'), 'not for d');
      mkdirSync(join(upperLayer, 'd'), { recursive: true });
      // Written straight onto the layer directory, as a layer the unpacker did not write could carry it.
      native.lsetxattr(join(upperLayer, 'd'), 'trusted.overlay.redirect', Buffer.from('/secret'));
      const target = join(base, 'rootfs');
      targets.push(target);
      mounter.mount({ layerDirs: [lower, upperLayer], upperDir: join(base, 'upper'), workDir: join(base, 'work'), target });
      const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === target);
      assert.match(line ?? '', /redirect_dir=nofollow/);
      assert.doesNotMatch(line ?? '', /metacopy=on/);
      let listed: string[] | string;
      try {
        listed = readdirSync(join(target, 'd'));
      } catch (err) {
        listed = (err as NodeJS.ErrnoException).code ?? String(err);
      }
      assert.ok(!(Array.isArray(listed) && listed.includes('file')), `d must not show the redirect's target: ${JSON.stringify(listed)}`);
    });
  }
});

describe('layers held by containers', () => {
  let registry: TestRegistry;
  let images: Images;
  let db: BerthDatabase;
  const root = mkdtempSync('/tmp/berth-images-');
  before(async () => {
    registry = await startRegistry();
    const config = buildConfig(`root = ${JSON.stringify(root)}\n`);
    db = new BerthDatabase(join(root, 'berth.db'));
    images = new Images({ config, db, log: pino({ level: 'silent' }) });
    images.init();
  });
  after(async () => {
    await images?.close();
    db?.close();
    await registry?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('forContainer gives the layers base first; held layers outlive RemoveImage until released', async () => {
    const pushed = await pushBusyboxImage(registry, 'held/app:v1', { extraLayers: [[{ path: 'held', type: 'file', content: 'h' }]] });
    await images.pull(parseImageReference(pushed.reference));
    const resolved = images.forContainer(pushed.reference);
    assert.equal(resolved.image.id, pushed.imageId);
    assert.equal(resolved.layerDirs.length, 2);
    assert.ok(existsSync(join(resolved.layerDirs[0], 'bin/busybox')));
    assert.ok(existsSync(join(resolved.layerDirs[1], 'held')));
    assert.deepEqual(resolved.image.config.Cmd, ['sh']);
    images.holdLayers('container-1', resolved.image.id);
    await images.remove(pushed.reference);
    assert.equal(images.resolve(pushed.reference), undefined);
    for (const layer of resolved.layerDirs) assert.ok(existsSync(layer), 'a held layer stays');
    assert.throws(() => images.forContainer(pushed.reference), /not found/);
    await images.releaseLayers('container-1');
    for (const layer of resolved.layerDirs) assert.ok(!existsSync(layer), 'released layers are collected');
  });
});
