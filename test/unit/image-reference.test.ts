import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatImageReference, looksLikeImageId, parseImageReference } from '../../runtime/image/image-reference';
import { isBerthError } from '../../runtime/errors';

const D = `sha256:${'ab'.repeat(32)}`;

describe('image references', () => {
  const cases: [string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['someone/app', 'docker.io/someone/app:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['registry.k8s.io/pause:3.10', 'registry.k8s.io/pause:3.10'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/a/b/c:v1', 'localhost:5000/a/b/c:v1'],
    ['127.0.0.1:5000/test/busybox:latest', '127.0.0.1:5000/test/busybox:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`quay.io/x/y:tag@${D}`, `quay.io/x/y:tag@${D}`],
    ['my-registry.example.com:443/a__b/c.d-e:T_1.2-x', 'my-registry.example.com:443/a__b/c.d-e:T_1.2-x'],
  ];
  for (const [input, expected] of cases) {
    test(`"${input}" normalizes to "${expected}"`, () => {
      assert.equal(formatImageReference(parseImageReference(input)), expected);
    });
  }

  test('a digest-only reference has no tag', () => {
    const ref = parseImageReference(`localhost:5000/x@${D}`);
    assert.equal(ref.tag, undefined);
    assert.equal(ref.digest, D);
    assert.equal(ref.registry, 'localhost:5000');
    assert.equal(ref.repository, 'x');
  });

  const invalid: [string, RegExp][] = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['busybox:', /not a valid tag/],
    ['busybox:-x', /not a valid tag/],
    ['a//b', /path component/],
    ['a/b/', /path component/],
    ['-abc', /path component/],
    ['busybox@sha256:abc', /digest/],
    ['busybox@sha256:' + 'A'.repeat(64), /64 lowercase hex/],
    ['ab'.repeat(32), /image id/],
    ['busy box', /whitespace/],
    [`reg.io/${'a'.repeat(260)}`, /longer than 255/],
    ['bad_host.io:x/a', /registry host/],
  ];
  for (const [input, message] of invalid) {
    test(`"${input.slice(0, 40)}" is refused as InvalidArgument`, () => {
      assert.throws(() => parseImageReference(input), (err: unknown) => isBerthError(err, 'InvalidArgument') && message.test((err as Error).message));
    });
  }

  test('image ids are recognised with and without the algorithm', () => {
    assert.ok(looksLikeImageId('ab'.repeat(32)));
    assert.ok(looksLikeImageId(D));
    assert.ok(!looksLikeImageId('busybox'));
  });
});
