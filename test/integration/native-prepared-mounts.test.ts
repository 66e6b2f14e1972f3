// Mounts the addon prepares host-side for runc 1.1, which has neither idmapped
// nor recursive read-only mounts (native/src/prepared_mounts.cc): idmapped bind
// mounts of volumes, recursive read-only trees, and container root filesystems
// as overlays of idmapped layers. Ownership is checked from outside, by stat on
// the host and by writing as the mapped host uid with setpriv (util-linux).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { kernelAtLeast, withScratchMounts, type ScratchMounts } from '../support/scratch-mounts';

// Container ids 0..65535 are host uids 100000.. and host gids 200000..; 65534 is the kernel's overflow id.
const UIDS = [{ containerId: 0, hostId: 100000, size: 65536 }];
const GIDS = [{ containerId: 0, hostId: 200000, size: 65536 }];
const OVERFLOW_ID = 65534;

const IDMAP_SKIP = kernelAtLeast(5, 12) ? false : 'idmapped mounts need mount_setattr (Linux 5.12+)';
const TMPFS_IDMAP_SKIP = IDMAP_SKIP || (kernelAtLeast(6, 3) ? false : 'tmpfs accepts MOUNT_ATTR_IDMAP from Linux 6.3');
const OVERLAY_FD_SKIP = IDMAP_SKIP || (kernelAtLeast(6, 13) ? false : 'overlayfs takes its layers as fds (FSCONFIG_SET_FD) from Linux 6.13');

function pinUserns(s: ScratchMounts): string {
  const user = s.pinned(join(s.dir, 'userns'));
  s.native.createPodUserNamespace({ user, net: '', ipc: '', uts: '', hostname: '', sysctls: [], loopbackUp: false, uidMappings: UIDS, gidMappings: GIDS });
  return user;
}

function dir(...parts: string[]): string {
  const path = join(...parts);
  mkdirSync(path, { recursive: true });
  return path;
}

function owner(path: string): [number, number] {
  const st = statSync(path);
  return [st.uid, st.gid];
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

/** Runs a shell command with the given host uid/gid and no supplementary groups. */
function asHostIds(uid: number, gid: number, script: string): { status: number | null; stderr: string } {
  const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', 'sh', '-c', script], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test('an idmapped bind mount shows on-disk ids as the mapped host ids, and ids outside the map as overflow', { skip: IDMAP_SKIP }, () =>
  withScratchMounts('idmap-bind', (s) => {
    const userns = pinUserns(s);
    const volume = dir(s.dir, 'volume');
    for (const [name, id] of [['root-file', 0], ['user-file', 1000], ['unmapped-file', 70000]] as const) {
      writeFileSync(join(volume, name), name);
      chownSync(join(volume, name), id, id);
    }
    const target = s.mounted(dir(s.dir, 'prepared'));
    s.native.bindMountTree(volume, target, { recursive: false, readonly: false, usernsPath: userns });
    assert.deepEqual(owner(join(target, 'root-file')), [100000, 200000]);
    assert.deepEqual(owner(join(target, 'user-file')), [101000, 201000]);
    assert.deepEqual(owner(join(target, 'unmapped-file')), [OVERFLOW_ID, OVERFLOW_ID]);
    assert.deepEqual(owner(join(volume, 'root-file')), [0, 0], 'the volume itself is unchanged');
    assert.equal(readFileSync(join(target, 'user-file'), 'utf8'), 'user-file');
  }));

test("a file written through an idmapped bind mount by the pod's root lands on disk as the container's id 0", { skip: IDMAP_SKIP }, () =>
  withScratchMounts('idmap-write', (s) => {
    const userns = pinUserns(s);
    const volume = dir(s.dir, 'volume');
    const target = s.mounted(dir(s.dir, 'prepared'));
    s.native.bindMountTree(volume, target, { recursive: false, readonly: false, usernsPath: userns });
    // Host uid 100000 is the container's root: the volume (root-owned, 0755 on disk) is its own through the mount...
    const through = asHostIds(100000, 200000, `echo written > ${join(target, 'new-file')}`);
    assert.equal(through.status, 0, through.stderr);
    assert.deepEqual(owner(join(volume, 'new-file')), [0, 0]);
    assert.deepEqual(owner(join(target, 'new-file')), [100000, 200000]);
    // ...and nobody's on the plain path.
    const direct = asHostIds(100000, 200000, `echo written > ${join(volume, 'other-file')}`);
    assert.notEqual(direct.status, 0);
    assert.match(direct.stderr, /Permission denied/);
  }));

test('a single file can be bind-mounted idmapped', { skip: IDMAP_SKIP }, () =>
  withScratchMounts('idmap-file', (s) => {
    const userns = pinUserns(s);
    const file = join(s.dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 10.0.0.10\n');
    const target = join(s.dir, 'prepared.conf');
    writeFileSync(target, '');
    s.mounted(target);
    s.native.bindMountTree(file, target, { recursive: false, readonly: true, usernsPath: userns });
    assert.deepEqual(owner(target), [100000, 200000]);
    assert.equal(readFileSync(target, 'utf8'), 'nameserver 10.0.0.10\n');
  }));

test('a recursive read-only bind mount makes its submounts read-only too, and leaves the source writable', () =>
  withScratchMounts('rro', (s) => {
    const source = dir(s.dir, 'source');
    const sub = s.mounted(dir(source, 'sub'));
    s.native.mount('tmpfs', sub, 'tmpfs', 0, 'size=1m');
    const target = s.mounted(dir(s.dir, 'rro'));
    s.native.bindMountTree(source, target, { recursive: true, readonly: true, usernsPath: '' });
    assert.throws(() => writeFileSync(join(target, 'top-file'), 'x'), { code: 'EROFS' });
    assert.throws(() => writeFileSync(join(target, 'sub', 'sub-file'), 'x'), { code: 'EROFS' }, 'the submount is read-only through the rro tree');
    writeFileSync(join(sub, 'sub-file'), 'written at the source');
    assert.equal(readFileSync(join(target, 'sub', 'sub-file'), 'utf8'), 'written at the source', 'the clone is the same tmpfs');
  }));

test('recursive read-only and idmapped together, over an idmappable submount', { skip: TMPFS_IDMAP_SKIP }, () =>
  withScratchMounts('rro-idmap', (s) => {
    const userns = pinUserns(s);
    const source = dir(s.dir, 'source');
    const sub = s.mounted(dir(source, 'sub'));
    s.native.mount('tmpfs', sub, 'tmpfs', 0, 'size=1m,mode=0755');
    const target = s.mounted(dir(s.dir, 'prepared'));
    s.native.bindMountTree(source, target, { recursive: true, readonly: true, usernsPath: userns });
    assert.deepEqual(owner(join(target, 'sub')), [100000, 200000]);
    assert.throws(() => writeFileSync(join(target, 'sub', 'f'), 'x'), { code: 'EROFS' });
  }));

test('an idmapped overlay shows its layers as the mapped owner, and copy-ups and new files land in upper as the host ids', { skip: OVERLAY_FD_SKIP }, () =>
  withScratchMounts('idmap-overlay', (s) => {
    const userns = pinUserns(s);
    const [bottom, top] = [dir(s.dir, 'layers', '1'), dir(s.dir, 'layers', '2')];
    writeFileSync(join(bottom, 'etc-file'), 'from the bottom layer\n');
    writeFileSync(join(top, 'user-file'), 'from the top layer\n');
    chownSync(join(top, 'user-file'), 1000, 1000);
    const container = dir(s.dir, 'container');
    const [upper, work] = [dir(container, 'upper'), dir(container, 'work')];
    chownSync(upper, 100000, 200000);
    const rootfs = s.mounted(dir(container, 'rootfs'));
    s.native.mountIdmappedOverlay([top, bottom], upper, work, rootfs, false, userns);
    const mountLine = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === rootfs);
    assert.match(mountLine ?? '', /redirect_dir=nofollow/, 'a layer\'s trusted.overlay.redirect is never followed');

    assert.deepEqual(owner(rootfs), [100000, 200000]);
    assert.deepEqual(owner(join(rootfs, 'etc-file')), [100000, 200000]);
    assert.deepEqual(owner(join(rootfs, 'user-file')), [101000, 201000]);
    const write = asHostIds(100000, 200000, `echo new > ${join(rootfs, 'new-file')} && echo appended >> ${join(rootfs, 'etc-file')}`);
    assert.equal(write.status, 0, write.stderr);
    assert.deepEqual(owner(join(upper, 'new-file')), [100000, 200000]);
    assert.deepEqual(owner(join(upper, 'etc-file')), [100000, 200000], 'the copy-up is owned by the host ids of the container root');
    assert.equal(readFileSync(join(upper, 'etc-file'), 'utf8'), 'from the bottom layer\nappended\n');
    assert.equal(readFileSync(join(bottom, 'etc-file'), 'utf8'), 'from the bottom layer\n', 'the layer is never changed');
    assert.deepEqual(owner(join(bottom, 'etc-file')), [0, 0]);
  }));

test('an idmapped overlay without upper dir is read-only (the image-volume shape), with one layer or several', { skip: OVERLAY_FD_SKIP }, () =>
  withScratchMounts('idmap-overlay-ro', (s) => {
    const userns = pinUserns(s);
    const [bottom, top] = [dir(s.dir, 'layers', '1'), dir(s.dir, 'layers', '2')];
    writeFileSync(join(bottom, 'data'), 'bottom\n');
    writeFileSync(join(top, 'data'), 'top\n');
    writeFileSync(join(bottom, 'only-bottom'), 'bottom\n');
    for (const [name, layers] of [['two', [top, bottom]], ['one', [bottom]]] as const) {
      const target = s.mounted(dir(s.dir, name));
      s.native.mountIdmappedOverlay([...layers], '', '', target, true, userns);
      assert.deepEqual(owner(join(target, 'data')), [100000, 200000], name);
      assert.equal(readFileSync(join(target, 'data'), 'utf8'), name === 'two' ? 'top\n' : 'bottom\n');
      assert.equal(readFileSync(join(target, 'only-bottom'), 'utf8'), 'bottom\n');
      assert.throws(() => writeFileSync(join(target, 'data'), 'x'), { code: 'EROFS' }, name);
    }
  }));

test('bad user namespace paths and layouts are errors naming the step and the path, with nothing mounted', { skip: IDMAP_SKIP }, () =>
  withScratchMounts('idmap-errors', (s) => {
    const source = dir(s.dir, 'source');
    const target = s.mounted(dir(s.dir, 'target'));
    const missing = join(s.dir, 'no-such-userns');
    assert.throws(() => s.native.bindMountTree(source, target, { recursive: false, readonly: false, usernsPath: missing }), (err: Error & { syscall?: string; path?: string }) => {
      assert.equal(err.syscall, 'open');
      assert.equal(err.path, missing);
      return true;
    });
    const notANamespace = join(s.dir, 'plain-file');
    writeFileSync(notANamespace, '');
    assert.throws(() => s.native.bindMountTree(source, target, { recursive: false, readonly: false, usernsPath: notANamespace }), /mount_setattr\(IDMAP\)/);
    assert.throws(() => s.native.mountIdmappedOverlay([source], join(s.dir, 'upper'), '', target, false, notANamespace), {
      name: 'TypeError',
      message: /both upper and work dirs or neither/,
    });
    assert.equal(isMountPoint(target), false, 'nothing is mounted at the target');
  }));
