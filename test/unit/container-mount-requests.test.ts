// The rules berth applies to mount requests and user namespace options before
// anything is made (pure checks), the image sub-path walk, and criu's log excerpt.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Mount__Output } from '../../cri-proto/generated/runtime/v1/Mount';
import type { UserNamespace__Output } from '../../cri-proto/generated/runtime/v1/UserNamespace';
import { subPathOf, validateMountRequests } from '../../runtime/container/prepared-mounts';
import { isBerthError } from '../../runtime/errors';
import { criuErrorExcerpt } from '../../runtime/host/checkpoint-support';
import type { MountFeatures } from '../../runtime/host/mount-features';
import type { PodUserNamespace } from '../../runtime/sandbox/sandbox-types';
import { validateUsernsOptions } from '../../runtime/sandbox/user-namespace-options';

const SUPPORTED: MountFeatures = { recursiveReadOnly: { supported: true }, userNamespaces: { supported: true } };
const USERNS: PodUserNamespace = { path: '/run/x/user/p', uids: { containerId: 0, hostId: 65536, size: 65536 }, gids: { containerId: 0, hostId: 65536, size: 65536 } };

function mount(overrides: Partial<Mount__Output> = {}): Mount__Output {
  return {
    container_path: '/mnt', host_path: '/tmp', readonly: false, selinux_relabel: false, propagation: 'PROPAGATION_PRIVATE',
    uidMappings: [], gidMappings: [], recursive_read_only: false, image: null, image_sub_path: '', mount_options: [],
    ...overrides,
  };
}

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isBerthError(err, 'InvalidArgument'), String(err));
    return err.message;
  }
  assert.fail('expected INVALID_ARGUMENT');
}

describe('recursive read-only mount requests', () => {
  test('are accepted read-only with private propagation', () => {
    assert.doesNotThrow(() => validateMountRequests([mount({ readonly: true, recursive_read_only: true })], SUPPORTED, undefined));
  });

  test('are refused when not read-only, or with propagation other than private', () => {
    assert.match(invalid(() => validateMountRequests([mount({ recursive_read_only: true })], SUPPORTED, undefined)), /^config\.mounts\[0\]\.recursive_read_only: needs readonly/);
    for (const propagation of ['PROPAGATION_HOST_TO_CONTAINER', 'PROPAGATION_BIDIRECTIONAL'] as const) {
      const m = mount({ readonly: true, recursive_read_only: true, propagation });
      assert.match(invalid(() => validateMountRequests([mount(), m], SUPPORTED, undefined)), new RegExp(`^config\\.mounts\\[1\\]\\.recursive_read_only: needs propagation PROPAGATION_PRIVATE, got ${propagation}`));
    }
  });

  test('are refused, saying why, on a host that cannot make them', () => {
    const features: MountFeatures = { ...SUPPORTED, recursiveReadOnly: { supported: false, reason: 'mount_setattr: Function not implemented' } };
    assert.match(invalid(() => validateMountRequests([mount({ readonly: true, recursive_read_only: true })], features, undefined)), /not supported on this host \(mount_setattr/);
  });
});

describe('image volume requests', () => {
  test('take an image instead of a host path, and a sub path only with an image', () => {
    assert.doesNotThrow(() => validateMountRequests([mount({ host_path: '', image: { image: 'busybox', annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' }, image_sub_path: 'etc' })], SUPPORTED, undefined));
    assert.match(invalid(() => validateMountRequests([mount({ image: { image: 'busybox', annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' } })], SUPPORTED, undefined)), /host_path and image are exclusive/);
    assert.match(invalid(() => validateMountRequests([mount({ image_sub_path: 'etc' })], SUPPORTED, undefined)), /image_sub_path: only applies to an image volume/);
  });
});

describe('mounts in a pod with its own user namespace', () => {
  test("per-mount mappings must be the pod's, and need a pod user namespace", () => {
    const pods = [{ container_id: 0, host_id: 65536, length: 65536 }];
    assert.doesNotThrow(() => validateMountRequests([mount({ uidMappings: pods, gidMappings: pods })], SUPPORTED, USERNS));
    assert.match(invalid(() => validateMountRequests([mount({ uidMappings: [{ container_id: 0, host_id: 1, length: 10 }] })], SUPPORTED, USERNS)), /uidMappings: must be the pod's mapping \(0 65536 65536\)/);
    assert.match(invalid(() => validateMountRequests([mount({ gidMappings: pods })], SUPPORTED, undefined)), /gidMappings: an idmapped mount needs the pod to have its own user namespace/);
  });

  test('propagation other than private is refused (an idmapped clone is private)', () => {
    assert.match(invalid(() => validateMountRequests([mount({ propagation: 'PROPAGATION_HOST_TO_CONTAINER' })], SUPPORTED, USERNS)), /propagation: PROPAGATION_HOST_TO_CONTAINER is not possible for an idmapped mount/);
  });
});

describe('pod user namespace options', () => {
  const field = 'userns_options';
  const modes = { network: 'POD', pid: 'POD', ipc: 'POD' } as const;
  const one = (container_id = 0) => [{ container_id, host_id: 100000, length: 65536 }];
  const options = (o: Partial<UserNamespace__Output>): UserNamespace__Output => ({ mode: 'POD', uids: one(), gids: one(), ...o });

  test('POD takes one uid and one gid mapping from container id 0', () => {
    assert.deepEqual(validateUsernsOptions(options({}), modes, field), { uids: { containerId: 0, hostId: 100000, size: 65536 }, gids: { containerId: 0, hostId: 100000, size: 65536 } });
  });

  test('NODE and no options are the host user namespace', () => {
    assert.equal(validateUsernsOptions(null, modes, field), undefined);
    assert.equal(validateUsernsOptions(options({ mode: 'NODE', uids: [], gids: [] }), modes, field), undefined);
    assert.match(invalid(() => validateUsernsOptions(options({ mode: 'NODE' }), modes, field)), /mode NODE takes no uids or gids/);
  });

  test('mappings past 2^32 and empty ones are refused', () => {
    assert.match(invalid(() => validateUsernsOptions(options({ uids: [{ container_id: 0, host_id: 2 ** 32 - 10, length: 65536 }] }), modes, field)), /uids\[0\]: host ids .* run past 2\^32/);
    assert.match(invalid(() => validateUsernsOptions(options({ gids: [{ container_id: 0, host_id: 1, length: 0 }] }), modes, field)), /gids\[0\]\.length: must be above 0/);
  });
});

describe('image sub paths', () => {
  const root = mkdtempSync('/tmp/berth-subpath-');
  after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc', 'conf.d'), { recursive: true });
  writeFileSync(join(root, 'etc', 'conf.d', 'a.conf'), '');
  symlinkSync('/etc', join(root, 'host-etc'));
  symlinkSync('conf.d', join(root, 'etc', 'link'));

  test('a directory or file inside the image is found', () => {
    assert.equal(subPathOf(root, 'etc/conf.d', 'f'), join(root, 'etc', 'conf.d'));
    assert.equal(subPathOf(root, '/etc//conf.d/./a.conf', 'f'), join(root, 'etc', 'conf.d', 'a.conf'));
    assert.equal(subPathOf(root, '', 'f'), root);
  });

  test('"..", symlinks on the way and missing paths are refused', () => {
    assert.match(invalid(() => subPathOf(root, 'etc/../..', 'f')), /may not contain "\.\."/);
    assert.match(invalid(() => subPathOf(root, 'host-etc/passwd', 'f')), /passes through a symlink \("host-etc"\)/);
    assert.match(invalid(() => subPathOf(root, 'etc/link', 'f')), /passes through a symlink \("etc\/link"\)/);
    assert.match(invalid(() => subPathOf(root, 'etc/none', 'f')), /does not exist in the image/);
    assert.match(invalid(() => subPathOf(root, 'etc/conf.d/a.conf/x', 'f')), /is not a directory/);
  });
});

describe("criu's log excerpt", () => {
  test('keeps the error lines, at most six, last ones first kept', () => {
    const log = [
      '(00.000200) Version: 3.17.1 (gitid 0)',
      '(00.062083) vdso: Parsing at 7ff4c6c68000 7ff4c6c6a000',
      '(00.062104) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds',
      '(00.062106) Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable',
      '(00.062107) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.',
    ].join('\n');
    assert.equal(criuErrorExcerpt(log).split('\n').length, 3);
    assert.match(criuErrorExcerpt(log), /^\(00\.062104\) Error \(criu\/vdso\.c:381\)/);
    assert.equal(criuErrorExcerpt('no errors here\nlast line'), 'no errors here\nlast line');
  });
});
