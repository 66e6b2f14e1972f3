// The image RPCs' request validation (runtime/image/image-request.ts): the one
// place an image request is checked; the shim only maps its errors.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PullImageRequest__Output } from '../../cri-proto/generated/runtime/v1/PullImageRequest';
import { isBerthError } from '../../runtime/errors';
import { imageFilterOf, requiredImage, validatePullRequest } from '../../runtime/image/image-request';

const spec = (image: string) => ({ image, annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' });
const noAuth = { username: '', password: '', auth: '', server_address: '', identity_token: '', registry_token: '' };
const pull = (image: string, auth: Partial<typeof noAuth> | null = null): PullImageRequest__Output => ({
  image: spec(image),
  auth: auth ? { ...noAuth, ...auth } : null,
  sandbox_config: null,
});

describe('image request validation', () => {
  test('a missing or blank image is INVALID_ARGUMENT naming the field', () => {
    for (const image of [null, spec(''), spec('   ')]) {
      assert.throws(() => requiredImage(image), (err) => isBerthError(err, 'InvalidArgument') && /image\.image is required/.test(err.message));
    }
    assert.throws(() => validatePullRequest({ image: null, auth: null, sandbox_config: null }), /image\.image is required/);
  });

  test('the image is trimmed', () => {
    assert.equal(requiredImage(spec('  busybox ')), 'busybox');
    assert.deepEqual(validatePullRequest(pull(' busybox:1 ')).image, { registry: 'docker.io', repository: 'library/busybox', tag: '1' });
  });

  test('a pull of a reference that does not parse is INVALID_ARGUMENT before anything is fetched', () => {
    assert.throws(() => validatePullRequest(pull('example.com/UPPER')), (err) => isBerthError(err, 'InvalidArgument') && /lowercase/.test(err.message));
    assert.throws(() => validatePullRequest(pull('busybox:bad tag')), (err) => isBerthError(err, 'InvalidArgument'));
  });

  test('credentials carry what the AuthConfig sets, and none when it sets nothing', () => {
    assert.equal(validatePullRequest(pull('busybox')).credentials, undefined);
    assert.equal(validatePullRequest(pull('busybox', {})).credentials, undefined);
    assert.deepEqual(validatePullRequest(pull('busybox', { username: 'u', password: 'p', server_address: 'r.example' })).credentials, {
      username: 'u',
      password: 'p',
      serverAddress: 'r.example',
    });
    assert.deepEqual(validatePullRequest(pull('busybox', { auth: 'dTpw', identity_token: 'id', registry_token: 'tok' })).credentials, {
      auth: 'dTpw',
      identityToken: 'id',
      registryToken: 'tok',
    });
  });

  test('a list filter names one image, or none when blank', () => {
    assert.equal(imageFilterOf(null), undefined);
    assert.equal(imageFilterOf({ image: null }), undefined);
    assert.equal(imageFilterOf({ image: spec('  ') }), undefined);
    assert.equal(imageFilterOf({ image: spec(' busybox ') }), 'busybox');
  });
});
