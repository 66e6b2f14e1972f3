import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isBerthError } from '../../runtime/errors';
import { MediaType, parseManifest, pickPlatform, layerCompression, userOfConfig, type ImageIndex } from '../../runtime/image/image-manifest';
import { parseWwwAuthenticate } from '../../runtime/image/registry-auth';
import { safeRelativePath } from '../../runtime/image/layer-unpacker';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const entry = (digest: string, architecture: string, variant?: string) => ({
  mediaType: MediaType.ociManifest, digest, size: 1, platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
});

describe('manifests', () => {
  test('schema 1 is refused with a clear message', () => {
    for (const [body, type] of [['{"schemaVersion":1}', 'application/json'], ['{}', MediaType.dockerSchema1Signed]] as const) {
      assert.throws(() => parseManifest(Buffer.from(body), type), (err: unknown) => isBerthError(err, 'FailedPrecondition') && /schema 1/.test((err as Error).message));
    }
  });

  test('an OCI manifest parses and its layers must have known media types', () => {
    const m = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: D('a'), size: 2 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: D('b'), size: 3 }] })), '');
    assert.equal(m.kind, 'manifest');
    assert.throws(() => layerCompression('application/vnd.oci.image.layer.v1.tar+encrypted'), /unsupported layer media type/);
    assert.throws(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: 'md5:x', size: 1 }, layers: [] })), ''), /digest/);
  });

  test('the platform pick prefers the exact variant, then none', () => {
    const index: ImageIndex = { kind: 'index', mediaType: MediaType.ociIndex, annotations: {}, manifests: [entry(D('1'), 'arm', 'v6'), entry(D('2'), 'arm', 'v7'), entry(D('3'), 'amd64'), entry(D('4'), 'arm64')] };
    assert.equal(pickPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' })?.digest, D('2'));
    assert.equal(pickPlatform(index, { os: 'linux', architecture: 'arm64', variant: 'v8' })?.digest, D('4'));
    assert.equal(pickPlatform(index, { os: 'linux', architecture: 'amd64' })?.digest, D('3'));
    assert.equal(pickPlatform(index, { os: 'linux', architecture: 's390x' }), undefined);
  });

  test('WWW-Authenticate challenges parse', () => {
    const c = parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"');
    assert.equal(c?.scheme, 'bearer');
    assert.deepEqual(c?.params, { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' });
    assert.equal(parseWwwAuthenticate('Basic realm="x"')?.scheme, 'basic');
  });

  test('USER gives uid or username', () => {
    assert.deepEqual(userOfConfig('1000'), { uid: 1000, username: '' });
    assert.deepEqual(userOfConfig('0:0'), { uid: 0, username: '' });
    assert.deepEqual(userOfConfig('app:grp'), { username: 'app' });
    assert.deepEqual(userOfConfig(''), { username: '' });
  });

  test('layer paths that leave the layer are refused', () => {
    assert.equal(safeRelativePath('./a/./b/'), 'a/b');
    assert.throws(() => safeRelativePath('a/../../b'), /escapes/);
    assert.throws(() => safeRelativePath('/etc/passwd'), /absolute/);
  });
});
