// Pulls through a real berthd from a real registry on 127.0.0.1: multi-layer
// images with whiteouts and opaque dirs, USER, multi-platform indexes, zstd and
// uncompressed layers, Docker schema 2, and the CRI answers about them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readlinkSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadNative } from '../../native';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import {
  buildBusyboxImage,
  buildImage,
  buildLayer,
  hostPlatform,
  pushBusyboxImage,
  pushImage,
  pushIndex,
} from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';

function layerDirs(berthd: BerthdProcess): string[] {
  const dir = join(berthd.root, 'layers');
  return readdirSync(dir).filter((d) => !d.startsWith('tmp-')).map((d) => join(dir, d, 'diff'));
}

function findLayerWith(berthd: BerthdProcess, rel: string): string | undefined {
  return layerDirs(berthd).find((d) => {
    try {
      lstatSync(join(d, rel));
      return true;
    } catch {
      return false;
    }
  });
}

describe('image pulls through berthd', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  before(async () => {
    registry = await startRegistry();
    berthd = await startBerthd();
  });
  after(async () => {
    await berthd?.cleanup();
    await registry?.stop();
  });

  test('a multi-layer image with whiteouts, opaque dirs, links, devices and xattrs unpacks overlay-ready', async () => {
    const pushed = await pushBusyboxImage(registry, 'test/layers:v1', {
      users: [{ name: 'app', uid: 1000, gid: 1000 }],
      extraLayers: [
        [
          { path: 'data/', type: 'dir' },
          { path: 'data/keep.txt', type: 'file', content: 'keep' },
          { path: 'data/gone.txt', type: 'file', content: 'gone' },
          { path: 'opaque/', type: 'dir' },
          { path: 'opaque/old.txt', type: 'file', content: 'old' },
        ],
        [
          { path: 'data/.wh.gone.txt', type: 'file' },
          { path: 'opaque/.wh..wh..opq', type: 'file' },
          { path: 'opaque/new.txt', type: 'file', content: 'new', mode: 0o640, uid: 1000, gid: 1000, mtime: 1600000000 },
          { path: 'links/', type: 'dir' },
          { path: 'links/hard', type: 'hardlink', linkname: 'opaque/new.txt' },
          { path: 'links/soft', type: 'symlink', linkname: '../opaque/new.txt' },
          { path: 'links/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
          { path: 'links/fifo', type: 'fifo', mode: 0o600 },
          { path: 'links/suid', type: 'file', content: '#!/bin/sh\n', mode: 0o4755 },
          { path: 'links/attr', type: 'file', content: 'x', xattrs: { 'user.berth': 'yes' } },
          { path: `deep/${'d'.repeat(120)}/file`, type: 'file', content: 'long name' },
        ],
      ],
      config: { User: 'app', Env: ['A=1'], Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], WorkingDir: '/data', StopSignal: 'SIGINT' },
    });
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    assert.equal(pull.image_ref, pushed.imageId);

    const native = loadNative();
    const whiteoutLayer = findLayerWith(berthd, 'data/gone.txt.wh-check-none') ?? findLayerWith(berthd, 'opaque/new.txt');
    assert.ok(whiteoutLayer, 'the top layer is unpacked');
    const whiteout = lstatSync(join(whiteoutLayer, 'data/gone.txt'));
    assert.ok(whiteout.isCharacterDevice(), 'a whiteout is a character device');
    assert.equal(whiteout.rdev, 0);
    assert.equal(native.lgetxattr(join(whiteoutLayer, 'opaque'), 'trusted.overlay.opaque')?.toString(), 'y');
    assert.ok(!existsSync(join(whiteoutLayer, 'opaque/.wh..wh..opq')));
    const file = statSync(join(whiteoutLayer, 'opaque/new.txt'));
    assert.equal(file.mode & 0o7777, 0o640);
    assert.equal(file.uid, 1000);
    assert.equal(file.mtimeMs, 1600000000 * 1000);
    assert.equal(file.nlink, 2, 'the hardlink shares the inode');
    assert.equal(statSync(join(whiteoutLayer, 'links/hard')).ino, file.ino);
    assert.equal(readlinkSync(join(whiteoutLayer, 'links/soft')), '../opaque/new.txt');
    const dev = lstatSync(join(whiteoutLayer, 'links/null'));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, 0x103);
    assert.ok(lstatSync(join(whiteoutLayer, 'links/fifo')).isFIFO());
    assert.equal(statSync(join(whiteoutLayer, 'links/suid')).mode & 0o7777, 0o4755);
    assert.equal(native.lgetxattr(join(whiteoutLayer, 'links/attr'), 'user.berth')?.toString(), 'yes');
    assert.equal(readFileSync(join(whiteoutLayer, `deep/${'d'.repeat(120)}/file`), 'utf8'), 'long name');
    const baseLayer = findLayerWith(berthd, 'bin/busybox');
    assert.ok(baseLayer);
    assert.equal(readlinkSync(join(baseLayer, 'bin/sh')), 'busybox');

    const status = await berthd.client.call('ImageStatus', { image: { image: pushed.reference }, verbose: true });
    assert.equal(status.image?.id, pushed.imageId);
    assert.deepEqual(status.image?.repo_tags, [pushed.reference]);
    assert.deepEqual(status.image?.repo_digests, [`${registry.host}/test/layers@${pushed.digest}`]);
    assert.equal(status.image?.username, 'app');
    assert.equal(status.image?.uid, null);
    const info = JSON.parse(status.info.info) as { imageSpec: { config: { User: string; StopSignal: string; Entrypoint: string[] } } };
    assert.equal(info.imageSpec.config.User, 'app');
    assert.equal(info.imageSpec.config.StopSignal, 'SIGINT');
    assert.deepEqual(info.imageSpec.config.Entrypoint, ['/bin/sh', '-c']);
    const size = pushed.images[0].layers.reduce((n, l) => n + l.size, 0) + pushed.images[0].config.size;
    assert.equal(status.image?.size, String(size));
  });

  test('a numeric USER is reported as uid', async () => {
    const pushed = await pushBusyboxImage(registry, 'test/uid:v1', { config: { User: '1234:55' } });
    await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    const status = await berthd.client.call('ImageStatus', { image: { image: pushed.reference } });
    assert.equal(status.image?.uid?.value, '1234');
    assert.equal(status.image?.username, '');
  });

  test('an index with two platforms pulls the host platform', async () => {
    const host = hostPlatform();
    const other = host.architecture === 'amd64' ? { os: 'linux', architecture: 'arm64', variant: 'v8' } : { os: 'linux', architecture: 'amd64' };
    const native = buildBusyboxImage();
    const foreign = buildImage({ layers: [buildLayer([{ path: 'foreign', type: 'file', content: 'not for this host' }])], platform: other });
    const pushed = await pushIndex(registry, 'test/multi:v1', [foreign, native]);
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    assert.equal(pull.image_ref, native.config.digest);
    const status = await berthd.client.call('ImageStatus', { image: { image: pushed.reference } });
    assert.deepEqual(status.image?.repo_digests, [`${registry.host}/test/multi@${pushed.digest}`]);
  });

  test('a Docker manifest list and schema 2 manifest pull', async () => {
    const image = buildBusyboxImage({ format: 'docker', extraLayers: [[{ path: 'docker-format', type: 'file', content: 'd' }]] });
    const pushed = await pushIndex(registry, 'test/docker:v1', [image], 'docker');
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    assert.equal(pull.image_ref, image.config.digest);
  });

  test('zstd and uncompressed layers pull', async () => {
    const zstd = await pushBusyboxImage(registry, 'test/zstd:v1', { compression: 'zstd', extraLayers: [[{ path: 'z', type: 'file', content: 'zstd layer' }]] });
    await berthd.client.call('PullImage', { image: { image: zstd.reference } });
    const layer = findLayerWith(berthd, 'z');
    assert.ok(layer);
    assert.equal(readFileSync(join(layer, 'z'), 'utf8'), 'zstd layer');
    const plain = await pushBusyboxImage(registry, 'test/plain:v1', { compression: 'none', extraLayers: [[{ path: 'p', type: 'file', content: 'plain layer' }]] });
    await berthd.client.call('PullImage', { image: { image: plain.reference } });
    assert.ok(findLayerWith(berthd, 'p'));
  });

  test('a pull by digest and ListImages with a filter', async () => {
    const pushed = await pushBusyboxImage(registry, 'test/bydigest:v1', { extraLayers: [[{ path: 'bd', type: 'file', content: '1' }]] });
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.digestReference } });
    assert.equal(pull.image_ref, pushed.imageId);
    const listed = await berthd.client.call('ListImages', { filter: { image: { image: pushed.digestReference } } });
    assert.equal(listed.images.length, 1);
    assert.deepEqual(listed.images[0].repo_tags, []);
    const all = await berthd.client.call('ListImages', {});
    assert.ok(all.images.length >= 5);
    const streamed = await berthd.client.collect('StreamImages', {});
    assert.deepEqual(streamed.flatMap((m) => m.images).map((i) => i.id).sort(), all.images.map((i) => i.id).sort());
    const byPrefix = await berthd.client.call('ImageStatus', { image: { image: pushed.imageId.slice(7, 19) } });
    assert.equal(byPrefix.image?.id, pushed.imageId);
  });

  test('ListImages follows every pull, moved tag and removal (its kept answer is dropped when the store changes)', async () => {
    const tagsOf = async (): Promise<Map<string, string[]>> =>
      new Map((await berthd.client.call('ListImages', {})).images.map((i) => [i.id, i.repo_tags]));
    const first = await pushBusyboxImage(registry, 'test/listed:v1', { extraLayers: [[{ path: 'l1', type: 'file', content: '1' }]] });
    await berthd.client.call('PullImage', { image: { image: first.reference } });
    assert.deepEqual((await tagsOf()).get(first.imageId), [first.reference]);
    assert.deepEqual((await tagsOf()).get(first.imageId), [first.reference], 'asked twice, the same answer');
    const second = await pushBusyboxImage(registry, 'test/listed:v1', { extraLayers: [[{ path: 'l2', type: 'file', content: '2' }]] });
    await berthd.client.call('PullImage', { image: { image: second.reference } });
    const moved = await tagsOf();
    assert.deepEqual(moved.get(second.imageId), [second.reference]);
    assert.deepEqual(moved.get(first.imageId), [], 'the tag moved to the new image');
    await berthd.client.call('RemoveImage', { image: { image: second.imageId } });
    assert.equal((await tagsOf()).has(second.imageId), false);
  });

  test('an absent image: ImageStatus answers empty, PullImage NOT_FOUND, bad references INVALID_ARGUMENT', async () => {
    const status = await berthd.client.call('ImageStatus', { image: { image: `${registry.host}/nope/nothing:v1` } });
    assert.equal(status.image, null);
    await assert.rejects(berthd.client.call('PullImage', { image: { image: `${registry.host}/nope/nothing:v1` } }), (err) => grpcCode(err) === 5);
    await assert.rejects(berthd.client.call('PullImage', { image: { image: 'Busybox' } }), (err) => grpcCode(err) === 3);
    await assert.rejects(berthd.client.call('PullImage', { image: { image: '' } }), (err) => grpcCode(err) === 3);
  });

  test('ImageFsInfo reports the store usage', async () => {
    const fs = await berthd.client.call('ImageFsInfo', {});
    assert.equal(fs.image_filesystems.length, 1);
    assert.equal(fs.image_filesystems[0].fs_id?.mountpoint, berthd.root);
    assert.ok(Number(fs.image_filesystems[0].used_bytes?.value) > 1_000_000, 'busybox is in the store');
    assert.ok(Number(fs.image_filesystems[0].inodes_used?.value) > 50);
    assert.equal(fs.container_filesystems.length, 1);
  });

  test('pull metrics are exported', async () => {
    const log = berthd.logs();
    assert.match(log, /pulled image/);
    void pushImage;
  });
});
