// Pulls that must fail cleanly or be shared: malicious layers, decompression
// bombs, a registry dying mid-layer, auth, mirrors, concurrent pulls, removal.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { loadNative } from '../../native';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { buildBusyboxImage, buildImage, buildLayer, layerFromTar, pushBusyboxImage, pushImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { writeTar } from '../support/tar-writer';

const OUTSIDE = '/tmp/berth-escape-canary';

function storeLeftovers(berthd: BerthdProcess): string[] {
  const layers = readdirSync(join(berthd.root, 'layers')).filter((d) => d.startsWith('tmp-'));
  const temp = readdirSync(join(berthd.root, 'content', 'tmp'));
  return [...layers, ...temp];
}

function layerWith(berthd: BerthdProcess, rel: string): string | undefined {
  const dir = join(berthd.root, 'layers');
  return readdirSync(dir).find((d) => !d.startsWith('tmp-') && existsSync(join(dir, d, 'diff', rel)));
}

function layerCount(berthd: BerthdProcess): number {
  return readdirSync(join(berthd.root, 'layers')).filter((d) => !d.startsWith('tmp-')).length;
}

/** A TCP proxy to the registry that cuts every connection after `cutAfter` response bytes. */
async function startCuttingProxy(target: number, cutAfter: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = (await import('node:net')).createServer((client) => {
    sockets.add(client);
    const upstream = connect(target, '127.0.0.1');
    sockets.add(upstream);
    let sent = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      // Manifests and configs are small: only big responses (the layer) get cut.
      if (sent > cutAfter) {
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('image pull safety and sharing', () => {
  let registry: TestRegistry;
  let authRegistry: TestRegistry;
  let tokenRegistry: TestRegistry;
  let berthd: BerthdProcess;
  let proxy: { port: number; close(): Promise<void> };
  let counting: Server;
  let manifestRequests = 0;
  let blobRequests = 0;
  let countingPort = 0;

  before(async () => {
    registry = await startRegistry();
    authRegistry = await startRegistry({ auth: 'basic' });
    tokenRegistry = await startRegistry({ auth: 'token' });
    proxy = await startCuttingProxy(registry.port, 200_000);
    // An HTTP proxy that counts what reaches the registry (for the shared-pull test).
    counting = createServer((req, res) => {
      if ((req.url ?? '').includes('/manifests/')) manifestRequests++;
      if ((req.url ?? '').includes('/blobs/')) blobRequests++;
      const upstream = connect(registry.port, '127.0.0.1');
      const head = `${req.method} ${req.url} HTTP/1.1\r\n${Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\nconnection: close\r\n\r\n`;
      upstream.write(head);
      req.pipe(upstream);
      upstream.pipe(res.socket!);
      upstream.on('error', () => res.destroy());
    });
    await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
    countingPort = (counting.address() as AddressInfo).port;
    berthd = await startBerthd({
      extraToml: [
        '[image]',
        'max_layer_unpacked_bytes = 20000000',
        'max_compression_ratio = 100',
        '[image.registries."registry.k8s.io"]',
        `mirrors = ["http://127.0.0.1:1", "http://${registry.host}"]`,
        'fallback_to_upstream = false',
        '[image.registries."flaky.example"]',
        `mirrors = ["http://127.0.0.1:${proxy.port}"]`,
        'fallback_to_upstream = false',
        '[image.registries."counted.example"]',
        `mirrors = ["http://127.0.0.1:${countingPort}"]`,
        'fallback_to_upstream = false',
      ].join('\n'),
    });
  });
  after(async () => {
    await berthd?.cleanup();
    await proxy?.close();
    // Connections piped straight to the registry never go idle: drop them first, or close() waits forever.
    counting?.closeAllConnections();
    await new Promise<void>((resolve) => (counting ? counting.close(() => resolve()) : resolve()));
    for (const r of [registry, authRegistry, tokenRegistry]) await r?.stop();
  });

  const maliciousLayers: [string, Buffer][] = [
    ['path traversal with ..', writeTar([{ path: '../../../../../../tmp/berth-escape-canary', type: 'file', content: 'pwned' }])],
    ['an absolute path', writeTar([{ path: OUTSIDE, type: 'file', content: 'pwned' }])],
    ['a write through a symlink', writeTar([{ path: 'escape', type: 'symlink', linkname: '/tmp' }, { path: 'escape/berth-escape-canary', type: 'file', content: 'pwned' }])],
    ['a write through a relative symlink', writeTar([{ path: 'up', type: 'symlink', linkname: '../../../../../../../tmp' }, { path: 'up/berth-escape-canary', type: 'file', content: 'x' }])],
    ['a hardlink to a file outside', writeTar([{ path: 'stolen', type: 'hardlink', linkname: '../../../../../../etc/passwd' }])],
    ['a hardlink to an absolute path', writeTar([{ path: 'stolen', type: 'hardlink', linkname: '/etc/passwd' }])],
    ['a hardlink through a symlink', writeTar([{ path: 'etcdir', type: 'symlink', linkname: '/etc' }, { path: 'stolen', type: 'hardlink', linkname: 'etcdir/passwd' }])],
  ];
  maliciousLayers.forEach(([what, tar], i) => {
    test(`a layer with ${what} fails the pull and writes nothing outside`, async () => {
      const before = layerCount(berthd);
      const image = buildImage({ layers: [buildLayer([{ path: 'ok', type: 'file', content: String(i) }]), layerFromTar(tar)] });
      const pushed = await pushImage(registry, `evil/layer${i}:v1`, image);
      await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 3 && /escape|absolute|symlink|not in this layer|hardlink/.test((err as Error).message));
      assert.ok(!existsSync(OUTSIDE), 'nothing was written outside the layer');
      assert.deepEqual(storeLeftovers(berthd), []);
      assert.ok(layerCount(berthd) <= before + 1, 'only the harmless layer may remain');
      const status = await berthd.client.call('ImageStatus', { image: { image: pushed.reference } });
      assert.equal(status.image, null);
    });
  });

  test('overlay and security xattrs in a layer are not applied; file capabilities are', async () => {
    const capability = Buffer.from([0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const layer = buildLayer([
      { path: 'xa/', type: 'dir', xattrs: { 'trusted.overlay.opaque': 'y' } },
      { path: 'xa/file', type: 'file', content: 'x', xattrs: { 'trusted.overlay.redirect': '/etc', 'trusted.overlay.opaque': 'y', 'security.ima': 'forged', 'security.capability': capability } },
    ]);
    const pushed = await pushImage(registry, 'evil/xattrs:v1', buildImage({ layers: [layer] }));
    await berthd.client.call('PullImage', { image: { image: pushed.reference } });
    const dir = layerWith(berthd, 'xa/file');
    assert.ok(dir, 'the layer is unpacked');
    const native = loadNative();
    const diff = join(berthd.root, 'layers', dir, 'diff');
    for (const name of ['trusted.overlay.redirect', 'trusted.overlay.opaque', 'security.ima']) assert.equal(native.lgetxattr(join(diff, 'xa/file'), name), undefined, name);
    assert.equal(native.lgetxattr(join(diff, 'xa'), 'trusted.overlay.opaque'), undefined, 'only a .wh..wh..opq marker makes a directory opaque');
    assert.deepEqual(native.lgetxattr(join(diff, 'xa/file'), 'security.capability'), capability);
    assert.match(berthd.logs(), /layer xattrs not applied/);
  });

  test('a decompression bomb over the ratio limit fails cleanly', async () => {
    const bomb = writeTar([{ path: 'zeros', type: 'file', content: Buffer.alloc(5_000_000) }]);
    const pushed = await pushImage(registry, 'evil/bomb:v1', buildImage({ layers: [layerFromTar(bomb, 'gzip')] }));
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 8 && /max_compression_ratio/.test((err as Error).message));
    assert.deepEqual(storeLeftovers(berthd), []);
  });

  test('a layer over the unpacked-size limit fails cleanly', async () => {
    const big = writeTar([{ path: 'big', type: 'file', content: Buffer.alloc(21_000_000, 1) }]);
    const pushed = await pushImage(registry, 'evil/big:v1', buildImage({ layers: [layerFromTar(big, 'none')] }));
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 8 && /max_layer_unpacked_bytes/.test((err as Error).message));
    assert.deepEqual(storeLeftovers(berthd), []);
  });

  test('layers whose content does not match the config diff ids fail the pull cleanly', async () => {
    // Big enough to stream through the layer worker in many batches, in each compression.
    const content = randomBytes(3_000_000);
    const layers = (['gzip', 'zstd', 'none'] as const).map((compression) => {
      const layer = layerFromTar(writeTar([{ path: `lying-${compression}`, type: 'file', content }]), compression);
      return { ...layer, diffId: `sha256:${'0'.repeat(64)}` };
    });
    for (const [i, layer] of layers.entries()) {
      const pushed = await pushImage(registry, `evil/diffid${i}:v1`, buildImage({ layers: [layer] }));
      await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 9 && /diff id/.test((err as Error).message));
      assert.deepEqual(storeLeftovers(berthd), []);
      assert.equal(layerWith(berthd, `lying-${['gzip', 'zstd', 'none'][i]}`), undefined);
    }
  });

  test('a registry that dies mid-layer fails the pull cleanly', async () => {
    const pushed = await pushBusyboxImage(registry, 'flaky/busybox:v1', { extraLayers: [[{ path: 'flaky', type: 'file', content: 'f' }]] });
    await assert.rejects(berthd.client.call('PullImage', { image: { image: `flaky.example/flaky/busybox:v1` } }), (err) => grpcCode(err) === 14);
    assert.deepEqual(storeLeftovers(berthd), []);
    // The same image pulls through a healthy endpoint afterwards.
    await berthd.client.call('PullImage', { image: { image: pushed.reference } });
  });

  test('mirrors are tried in order and serve a name the tests never resolve', async () => {
    const pushed = await pushBusyboxImage(registry, 'pause:3.10');
    const pull = await berthd.client.call('PullImage', { image: { image: 'registry.k8s.io/pause:3.10' } });
    assert.equal(pull.image_ref, pushed.imageId);
    const status = await berthd.client.call('ImageStatus', { image: { image: 'registry.k8s.io/pause:3.10' } });
    assert.deepEqual(status.image?.repo_tags, ['registry.k8s.io/pause:3.10']);
  });

  test('basic auth: refused without credentials, pulled with username/password and with base64 auth', async () => {
    const pushed = await pushBusyboxImage(authRegistry, 'private/app:v1');
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 9 && /credentials/.test((err as Error).message));
    await assert.rejects(
      berthd.client.call('PullImage', { image: { image: pushed.reference }, auth: { username: 'tester', password: 'wrong' } }),
      (err) => grpcCode(err) === 9,
    );
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference }, auth: { username: 'tester', password: 'secret-pw' } });
    assert.equal(pull.image_ref, pushed.imageId);
    await berthd.client.call('RemoveImage', { image: { image: pushed.reference } });
    const again = await berthd.client.call('PullImage', { image: { image: pushed.reference }, auth: { auth: Buffer.from('tester:secret-pw').toString('base64') } });
    assert.equal(again.image_ref, pushed.imageId);
  });

  test('token auth: a bearer token is fetched from the realm with the credentials', async () => {
    const pushed = await pushBusyboxImage(tokenRegistry, 'private/tok:v1');
    await assert.rejects(berthd.client.call('PullImage', { image: { image: pushed.reference } }), (err) => grpcCode(err) === 9);
    const pull = await berthd.client.call('PullImage', { image: { image: pushed.reference }, auth: { username: 'tester', password: 'secret-pw', server_address: tokenRegistry.host } });
    assert.equal(pull.image_ref, pushed.imageId);
    const bearer = (await tokenRegistry.authorization('private/tok', ['pull']))!.slice('Bearer '.length);
    await berthd.client.call('RemoveImage', { image: { image: pushed.reference } });
    const withToken = await berthd.client.call('PullImage', { image: { image: pushed.reference }, auth: { registry_token: bearer } });
    assert.equal(withToken.image_ref, pushed.imageId);
  });

  test('concurrent pulls of the same image do the work once', async () => {
    const pushed = await pushBusyboxImage(registry, 'shared/app:v1', { extraLayers: [[{ path: 'shared', type: 'file', content: 's' }]] });
    manifestRequests = 0;
    blobRequests = 0;
    const results = await Promise.all([1, 2, 3, 4].map(() => berthd.client.call('PullImage', { image: { image: 'counted.example/shared/app:v1' } })));
    for (const r of results) assert.equal(r.image_ref, pushed.imageId);
    assert.equal(manifestRequests, 1, 'one manifest fetch for four pulls');
    assert.equal(blobRequests, 2, 'the config and the one new layer (busybox is already present)');
  });

  test('RemoveImage: one tag of several, then the image; shared layers stay', async () => {
    const image = buildBusyboxImage({ extraLayers: [[{ path: 'rm-test', type: 'file', content: 'r' }]] });
    const a = await pushImage(registry, 'rm/app:a', image);
    const b = await pushImage(registry, 'rm/app:b', image);
    const sibling = await pushBusyboxImage(registry, 'rm/sibling:v1', { extraLayers: [[{ path: 'sibling', type: 'file', content: 's' }]] });
    await berthd.client.call('PullImage', { image: { image: a.reference } });
    await berthd.client.call('PullImage', { image: { image: b.reference } });
    await berthd.client.call('PullImage', { image: { image: sibling.reference } });
    const layersBefore = layerCount(berthd);
    const blobsBefore = readdirSync(join(berthd.root, 'content', 'sha256')).length;

    await berthd.client.call('RemoveImage', { image: { image: a.reference } });
    let status = await berthd.client.call('ImageStatus', { image: { image: b.reference } });
    assert.deepEqual(status.image?.repo_tags, [b.reference]);
    assert.equal(layerCount(berthd), layersBefore, 'untagging removes no layer');

    await berthd.client.call('RemoveImage', { image: { image: a.imageId } });
    status = await berthd.client.call('ImageStatus', { image: { image: b.reference } });
    assert.equal(status.image, null);
    assert.equal(layerWith(berthd, 'rm-test'), undefined, 'the layer no other image uses is gone');
    assert.ok(layerWith(berthd, 'sibling') && layerWith(berthd, 'bin/busybox'), 'layers other images use stay');
    assert.ok(layerCount(berthd) < layersBefore);
    assert.ok(readdirSync(join(berthd.root, 'content', 'sha256')).length < blobsBefore);
    const siblingStatus = await berthd.client.call('ImageStatus', { image: { image: sibling.reference } });
    assert.equal(siblingStatus.image?.id, sibling.imageId, 'the image sharing the busybox layer is intact');

    // Removing what is not there succeeds.
    await berthd.client.call('RemoveImage', { image: { image: a.reference } });
  });
});
