// Reading files from a hostile root filesystem (real files, FIFOs, devices and
// symlinks on this host, through the real addon): only regular files, no link
// followed on the way, capped, and never blocking the event loop.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { readRootfsFile as readWith, type RootfsFileOptions } from '../../runtime/common/rootfs-file-reader';
import { isBerthError } from '../../runtime/errors';

const native = loadNative();
const tmp = mkdtempSync('/tmp/berth-rootfs-read-');
after(() => rmSync(tmp, { recursive: true, force: true }));

function rootWithEtcIn(name: string): string {
  const root = join(tmp, name);
  mkdirSync(join(root, 'etc'), { recursive: true });
  return root;
}

// The kernel's openat2, and the component-by-component walk of kernels without it.
const modes: [string, RootfsFileOptions['native']][] = [
  ['openat2', native],
  ['component walk', { ...native, readFileBeneath: (root, path, max) => native.readFileBeneath(root, path, max, true) }],
];

const refused = (pattern: RegExp) => (err: unknown) => isBerthError(err, 'InvalidArgument') && pattern.test(err.message) && err.message.includes('/etc/passwd');

for (const [mode, modeNative] of modes) describe(`readRootfsFile (${mode})`, () => {
  const readRootfsFile = (root: string, path: string, options: RootfsFileOptions = {}) => readWith(root, path, { ...options, native: modeNative });
  const rootWithEtc = (name: string) => rootWithEtcIn(`${mode}-${name}`);

  test('reads a regular file inside the root', async () => {
    const root = rootWithEtc('plain');
    writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    assert.equal((await readRootfsFile(root, '/etc/passwd'))?.toString(), 'root:x:0:0::/root:/bin/sh\n');
  });

  test('a missing file, or a missing directory on the way, is undefined', async () => {
    const root = rootWithEtc('missing');
    assert.equal(await readRootfsFile(root, '/etc/passwd'), undefined);
    assert.equal(await readRootfsFile(root, '/nope/passwd'), undefined);
    writeFileSync(join(root, 'file'), 'x');
    assert.equal(await readRootfsFile(root, '/file/passwd'), undefined, 'a file where a directory should be');
  });

  test('a FIFO is refused at once, with nobody writing to it', async () => {
    const root = rootWithEtc('fifo');
    native.mknod(join(root, 'etc', 'passwd'), native.fileTypes.S_IFIFO | 0o644, 0, 0);
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/FIFO/));
  });

  test('a character device (/dev/zero) is refused without reading it', async () => {
    const root = rootWithEtc('chardev');
    native.mknod(join(root, 'etc', 'passwd'), native.fileTypes.S_IFCHR | 0o644, 1, 5);
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/character device/));
  });

  test('a symlink as the file is refused, even to a file inside the root', async () => {
    const root = rootWithEtc('link-last');
    writeFileSync(join(root, 'etc', 'real'), 'inside\n');
    symlinkSync('real', join(root, 'etc', 'passwd'));
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/symbolic link/));
    symlinkSync('/dev/zero', join(root, 'etc', 'group'));
    await assert.rejects(readRootfsFile(root, '/etc/group'), (err) => isBerthError(err, 'InvalidArgument') && /symbolic link/.test(err.message));
  });

  test('a symlink on the way is refused: the host\'s /etc is never read', async () => {
    const root = join(tmp, `${mode}-link-dir`);
    mkdirSync(root);
    symlinkSync('/etc', join(root, 'etc'));
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/symbolic link/));
  });

  test('".." cannot climb out of the root', async () => {
    const root = rootWithEtc('dotdot');
    writeFileSync(join(root, 'etc', 'passwd'), 'inside\n');
    const read = await readRootfsFile(root, '/../../../../etc/passwd').catch((err: unknown) => err);
    // Either refused or resolved as the kernel resolves it in a chroot: the root's own file.
    if (Buffer.isBuffer(read)) assert.equal(read.toString(), 'inside\n');
    else assert.ok(isBerthError(read, 'InvalidArgument'), String(read));
  });

  test('a file over the cap is refused; one at the cap is read whole', async () => {
    const root = rootWithEtc('big');
    writeFileSync(join(root, 'etc', 'passwd'), '');
    truncateSync(join(root, 'etc', 'passwd'), 64 * 1024 * 1024);
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/larger than 4194304 bytes/));
    writeFileSync(join(root, 'etc', 'group'), Buffer.alloc(1000, 'g'));
    assert.equal((await readRootfsFile(root, '/etc/group', { maxBytes: 1000 }))?.length, 1000);
    await assert.rejects(readRootfsFile(root, '/etc/group', { maxBytes: 999 }), /larger than 999 bytes/);
  });

  test('a directory is refused', async () => {
    const root = rootWithEtc('dir');
    mkdirSync(join(root, 'etc', 'passwd'));
    await assert.rejects(readRootfsFile(root, '/etc/passwd'), refused(/a directory/));
  });
});
