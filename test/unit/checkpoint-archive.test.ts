// The file side of checkpoints on the real file system (in berthd it runs on
// a worker thread; here it is called directly): a writable layer becomes
// rootfs-diff.tar and deleted.files and comes back the same; the archive
// reader takes only what a checkpoint holds; a restore's container config is
// the checkpoint's process with the request's volumes.
import assert from 'node:assert/strict';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { loadNative } from '../../native';
import { stageCheckpointArchive } from '../../runtime/checkpoint/checkpoint-archive-reader';
import { runCheckpointJob } from '../../runtime/checkpoint/checkpoint-jobs';
import { rfc3339Nanos } from '../../runtime/checkpoint/checkpoint-layout';
import { restoredContainerConfig } from '../../runtime/checkpoint/restored-config';
import { applyRootfsDiff, diffBudget, removeDeletedPaths, writeRootfsDiff } from '../../runtime/checkpoint/rootfs-diff';
import { isBerthError } from '../../runtime/errors';
import { tarEntryHeader, tarEnd } from '../../runtime/image/archive-writer';
import { TarReader, type TarEntry as ReadEntry } from '../../runtime/image/tar-reader';
import { writeTar } from '../support/tar-writer';

const native = loadNative();
const scratch = mkdtempSync('/tmp/berth-checkpoint-test-');
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const dir = join(scratch, `d${n++}`);
  mkdirSync(dir);
  return dir;
};

async function entriesOf(tar: Buffer): Promise<ReadEntry[]> {
  const reader = new TarReader((async function* () { yield tar; })());
  const out: ReadEntry[] = [];
  for (let e = await reader.next(); e; e = await reader.next()) out.push(e);
  return out;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(() => assert.fail('accepted'), (e: Error) => e);
}

describe('tar entry headers', () => {
  test('long and non-ASCII names, long link targets and large ids go into a PAX record; devices keep their numbers', async () => {
    const long = `${'deep/'.repeat(30)}file-é`;
    const tar = Buffer.concat([
      tarEntryHeader({ name: long, type: 'symlink', mode: 0o777, uid: 3_000_000, gid: 7, size: 0, mtime: 1_700_000_000, linkname: `/${'t'.repeat(150)}` }),
      tarEntryHeader({ name: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 1, devmajor: 1, devminor: 3 }),
      tarEntryHeader({ name: 'dir', type: 'dir', mode: 0o1777, uid: 0, gid: 0, size: 0, mtime: 1 }),
      tarEnd(),
    ]);
    const [link, dev, dir] = await entriesOf(tar);
    assert.deepEqual([link.name, link.linkname, link.uid, link.gid, link.typeflag, link.mtime], [long, `/${'t'.repeat(150)}`, 3_000_000, 7, '2', 1_700_000_000]);
    assert.deepEqual([dev.name, dev.typeflag, dev.devmajor, dev.devminor, dev.mode], ['dev/null', '3', 1, 3, 0o666]);
    assert.deepEqual([dir.name, dir.typeflag, dir.mode], ['dir/', '5', 0o1777]);
  });
});

describe('rootfs diff', () => {
  function upperWithChanges(): { upper: string; lower: string } {
    const lower = fresh();
    mkdirSync(join(lower, 'etc'));
    mkdirSync(join(lower, 'opaque'));
    for (const f of ['a', 'b', 'gone-in-lower']) writeFileSync(join(lower, 'opaque', f), f);
    native.mknod(join(lower, 'opaque', 'w'), native.fileTypes.S_IFCHR, 0, 0); // the image's own whiteout: nothing to delete
    const upper = fresh();
    mkdirSync(join(upper, 'etc'));
    writeFileSync(join(upper, 'etc', 'config'), 'changed\n');
    writeFileSync(join(upper, 'etc', 'hosts'), ''); // a mount point runc made
    native.mknod(join(upper, 'etc', 'motd'), native.fileTypes.S_IFCHR, 0, 0); // a whiteout: deleted
    mkdirSync(join(upper, 'opaque'));
    native.lsetxattr(join(upper, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
    writeFileSync(join(upper, 'opaque', 'a'), 'recreated');
    mkdirSync(join(upper, 'vol'));
    writeFileSync(join(upper, 'vol', 'hidden'), 'below a volume');
    symlinkSync('../etc/config', join(upper, 'link'));
    writeFileSync(join(upper, 'big'), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
    linkSync(join(upper, 'big'), join(upper, 'big-again'));
    native.mknod(join(upper, 'fifo'), native.fileTypes.S_IFIFO | 0o600, 0, 0);
    return { upper, lower };
  }

  test("an upper dir's changes and deletions round-trip; mount points and what is under them are left out", async () => {
    const { upper, lower } = upperWithChanges();
    const tarPath = join(scratch, `diff${n++}.tar`);
    const diff = writeRootfsDiff(native, { upperDir: upper, lowerDirsTopFirst: [lower], mountPoints: ['/etc/hosts', '/vol', '/proc'], tarPath });
    assert.deepEqual(diff.deleted.sort(), ['/etc/motd', '/opaque/b', '/opaque/gone-in-lower'].sort());
    const names = (await entriesOf(readFileSync(tarPath))).map((e) => e.name);
    assert.deepEqual(names, ['big', 'big-again', 'etc/', 'etc/config', 'fifo', 'link', 'opaque/', 'opaque/a']);
    assert.equal(statSync(tarPath).mode & 0o777, 0o600);

    const target = fresh();
    await applyRootfsDiff(native, tarPath, target, diffBudget(1 << 30, 1000));
    assert.equal(readFileSync(join(target, 'etc', 'config'), 'utf8'), 'changed\n');
    assert.equal(readlinkSync(join(target, 'link')), '../etc/config');
    assert.equal(statSync(join(target, 'big')).size, 3 * 1024 * 1024 + 5);
    assert.equal(statSync(join(target, 'big')).ino, statSync(join(target, 'big-again')).ino, 'hardlinks stay linked');
    assert.ok(lstatSync(join(target, 'fifo')).isFIFO());
    assert.ok(!existsSync(join(target, 'vol')));

    const small = diffBudget(1024, 1000);
    assert.ok(isBerthError(await rejection(applyRootfsDiff(native, tarPath, fresh(), small)), 'InvalidArgument'));
  });

  test('deleted paths are removed without following a link on the way; ".." is refused', () => {
    const root = fresh();
    const outside = fresh();
    writeFileSync(join(outside, 'precious'), 'x');
    symlinkSync(outside, join(root, 'escape'));
    mkdirSync(join(root, 'dir'));
    writeFileSync(join(root, 'dir', 'old'), 'x');
    assert.equal(removeDeletedPaths(root, ['/escape/precious', '/dir/old', '/never-there', '/']), 1);
    assert.ok(existsSync(join(outside, 'precious')));
    assert.ok(!existsSync(join(root, 'dir', 'old')));
    assert.throws(() => removeDeletedPaths(root, ['/dir/../../x']), /deleted\.files/);
  });
});

describe('checkpoint archive reader', () => {
  const meta = [
    { path: 'config.dump', type: 'file' as const, content: JSON.stringify({ id: 'c1', name: 'n', rootfsImageRef: 'sha256:' + 'a'.repeat(64), createdTime: rfc3339Nanos('1'), checkpointedTime: rfc3339Nanos('2') }) },
    { path: 'spec.dump', type: 'file' as const, content: JSON.stringify({ process: { args: ['sh'] } }) },
  ];

  test('stages the criu images and the diff, reads the metadata, and skips what a restore does not need', async () => {
    const archive = join(scratch, `a${n++}.tar`);
    writeFileSync(archive, writeTar([
      ...meta,
      { path: 'checkpoint/', type: 'dir' }, { path: 'checkpoint/inventory.img', type: 'file', content: 'inv' }, { path: 'checkpoint/pages-1.img', type: 'file', content: 'pages' },
      { path: 'rootfs-diff.tar', type: 'file', content: 'diff' }, { path: 'deleted.files', type: 'file', content: '["/x"]' },
      { path: 'stats-dump', type: 'file', content: 'ignored' }, { path: 'link', type: 'symlink', linkname: '/etc/shadow' },
    ]));
    const dir = fresh();
    const staged = await stageCheckpointArchive(archive, dir);
    assert.equal(readFileSync(join(staged.imagesDir, 'pages-1.img'), 'utf8'), 'pages');
    assert.equal(readFileSync(staged.rootfsDiff!, 'utf8'), 'diff');
    assert.deepEqual(staged.deleted, ['/x']);
    assert.equal(staged.container.id, 'c1');
    assert.ok(!existsSync(join(dir, 'stats-dump')) && !existsSync(join(dir, 'link')));
  });

  test('refuses entries that leave the archive, an archive without criu images, and a missing file', async () => {
    const escaping = join(scratch, `a${n++}.tar`);
    writeFileSync(escaping, writeTar([...meta, { path: 'checkpoint/../../evil', type: 'file', content: 'x' }]));
    assert.match((await rejection(stageCheckpointArchive(escaping, fresh()))).message, /leaves the archive/);
    const empty = join(scratch, `a${n++}.tar`);
    writeFileSync(empty, writeTar(meta));
    assert.match((await rejection(stageCheckpointArchive(empty, fresh()))).message, /holds no criu images/);
    const missing = await rejection(stageCheckpointArchive(join(scratch, 'nope.tar'), fresh()));
    assert.ok(isBerthError(missing, 'NotFound'));
  });
});

describe("a restored container's config", () => {
  const request = {
    metadata: { name: 'restored', attempt: 1 }, image: { image: '/ckpt.tar', annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' },
    command: [], args: [], working_dir: '', envs: [], devices: [], labels: { l: '1' }, annotations: { a: '1' }, log_path: 'r.log',
    stdin: false, stdin_once: false, tty: false, linux: null, windows: null, CDI_devices: [], stop_signal: 'RUNTIME_DEFAULT',
    mounts: [
      { container_path: '/data', host_path: '/srv/data', readonly: false, selinux_relabel: false, propagation: 'PROPAGATION_PRIVATE', uidMappings: [], gidMappings: [], recursive_read_only: false, image: null, image_sub_path: '', mount_options: [] },
      { container_path: '/extra', host_path: '/srv/extra', readonly: false, selinux_relabel: false, propagation: 'PROPAGATION_PRIVATE', uidMappings: [], gidMappings: [], recursive_read_only: false, image: null, image_sub_path: '', mount_options: [] },
    ],
  } as unknown as ContainerConfig__Output;
  const container = { id: 'c1', name: 'n', rootfsImageRef: 'sha256:abc', rootfsImageName: 'busybox:1', createdTime: '', checkpointedTime: '' };
  const spec = {
    process: { args: ['sh', '-c', 'count'], env: ['PATH=/bin', 'EMPTY='], cwd: '/work', user: { uid: 1000, gid: 1001 } },
    mounts: [{ destination: '/proc', type: 'proc' }, { destination: '/etc/hosts', type: 'bind', source: '/old/hosts' }, { destination: '/data', type: 'bind', source: '/old/data' }],
    linux: { maskedPaths: ['/proc/kcore'], readonlyPaths: [] },
  };

  test("takes the checkpoint's image and process, the request's names and volumes the checkpoint had", () => {
    const config = restoredContainerConfig(request, container, spec, '/ckpt.tar');
    assert.equal(config.image!.image, 'sha256:abc');
    assert.equal(config.image!.user_specified_image, '/ckpt.tar');
    assert.deepEqual([config.command, config.args, config.working_dir], [['sh', '-c', 'count'], [], '/work']);
    assert.deepEqual(config.envs.map((e) => [e.key, e.value.toString()]), [['PATH', '/bin'], ['EMPTY', '']]);
    assert.deepEqual(config.mounts.map((m) => m.container_path), ['/data']);
    assert.deepEqual([config.metadata, config.labels, config.log_path], [request.metadata, request.labels, 'r.log']);
    const sc = config.linux!.security_context!;
    assert.deepEqual([sc.masked_paths, sc.readonly_paths, sc.run_as_user?.value, sc.run_as_group?.value], [['/proc/kcore'], [], '1000', '1001']);
  });

  test('a volume of the checkpoint missing from the request is INVALID_ARGUMENT naming config.mounts', () => {
    const err = (() => {
      try {
        restoredContainerConfig({ ...request, mounts: [] }, container, spec, '/ckpt.tar');
      } catch (e) {
        return e as Error;
      }
      return assert.fail('accepted');
    })();
    assert.ok(isBerthError(err, 'InvalidArgument'));
    assert.match(err.message, /^config\.mounts: restoring \/ckpt\.tar needs the volumes its container had, at \/data$/);
  });

  test('times are written as Go writes them', () => {
    assert.equal(rfc3339Nanos('0'), '0001-01-01T00:00:00Z');
    assert.equal(rfc3339Nanos('1700000000123456789'), '2023-11-14T22:13:20.123456789Z');
    assert.equal(rfc3339Nanos('1700000000000000000'), '2023-11-14T22:13:20Z');
  });
});

describe('checkpoint jobs', () => {
  test('a job whose deadline passes is ended with DEADLINE_EXCEEDED, its thread terminated', async () => {
    const upper = fresh();
    writeFileSync(join(upper, 'f'), 'x');
    const job = runCheckpointJob({ op: 'remove-deleted', rootfs: upper, deleted: ['/f'] }, Date.now() - 1);
    const err = await rejection(job);
    assert.ok(isBerthError(err, 'DeadlineExceeded'), err.message);
  });

  test('a job runs on its worker thread and answers; its errors keep their kind', async () => {
    const root = fresh();
    writeFileSync(join(root, 'gone'), 'x');
    assert.deepEqual(await runCheckpointJob({ op: 'remove-deleted', rootfs: root, deleted: ['/gone'] }), { removed: 1 });
    assert.ok(!existsSync(join(root, 'gone')));
    const err = await rejection(runCheckpointJob({ op: 'remove-deleted', rootfs: root, deleted: ['/../x'] }));
    assert.ok(isBerthError(err, 'InvalidArgument'), err.message);
  });
});
