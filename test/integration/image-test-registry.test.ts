// The test registry and image builder other tests rely on: a pushed image can be
// read back through the distribution API, with and without auth.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pushBusyboxImage, MEDIA_TYPES, sha256 } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';

for (const auth of ['none', 'basic', 'token'] as const) {
  describe(`test registry with auth=${auth}`, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry({ auth });
    });
    after(async () => {
      await registry?.stop();
    });

    test('a pushed busybox image reads back with the same manifest digest', async () => {
      const pushed = await pushBusyboxImage(registry, 'test/busybox:latest');
      assert.equal(pushed.reference, `${registry.host}/test/busybox:latest`);
      const headers: Record<string, string> = { accept: MEDIA_TYPES.ociManifest };
      const authorization = await registry.authorization('test/busybox', ['pull']);
      if (authorization) headers.authorization = authorization;
      const res = await fetch(`${registry.url}/v2/test/busybox/manifests/latest`, { headers });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200);
      assert.equal(sha256(body), pushed.digest);
    });

    if (auth !== 'none') {
      test('an anonymous manifest read is refused', async () => {
        const res = await fetch(`${registry.url}/v2/test/busybox/manifests/latest`);
        await res.arrayBuffer();
        assert.equal(res.status, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', auth === 'basic' ? /^Basic/ : /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/);
      });
    }
  });
}
