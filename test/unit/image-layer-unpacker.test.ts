// The layer unpacker on the real file system (it runs in a worker thread in
// berthd; here it is called directly): owners, modes, times and replacements
// come out as the tar says even where it skips syscalls, whatever the chunking.
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, chmodSync, chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { isBerthError } from '../../runtime/errors';
import { ImageBudget, layerCharger } from '../../runtime/image/image-budget';
import { unpackLayer } from '../../runtime/image/layer-unpacker';
import { writeTar, type TarEntry } from '../support/tar-writer';

const scratch = mkdtempSync('/tmp/berth-unpacker-test-');
after(() => rmSync(scratch, { recursive: true, force: true }));

let dirs = 0;
function freshDir(): string {
  const dir = join(scratch, `layer${dirs++}`);
  mkdirSync(dir, { mode: 0o755 });
  return dir;
}

/** The tar in pieces of the given sizes (repeating), so headers and data straddle chunk boundaries. */
async function* chunked(tar: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (let i = 0; at < tar.length; i++) {
    const size = sizes[i % sizes.length];
    yield tar.subarray(at, at + size);
    at += size;
  }
}

const CHUNKINGS: [string, number[]][] = [
  ['one chunk', [1 << 30]],
  ['odd small chunks', [7, 513, 100, 1024, 3]],
  ['block-sized chunks', [512]],
];

const ENTRIES: TarEntry[] = [
  { path: 'etc/', type: 'dir', mode: 0o755, mtime: 1500000000 },
  { path: 'etc/shadow', type: 'file', content: 'secret', mode: 0o600, mtime: 1500000001 },
  { path: 'etc/world', type: 'file', content: 'w', mode: 0o666, mtime: 1500000002 },
  { path: 'etc/owned', type: 'file', content: 'o', mode: 0o640, uid: 1000, gid: 1001, mtime: 1500000003 },
  { path: 'bin/tool', type: 'file', content: Buffer.alloc(70_000, 7), mode: 0o4755, mtime: 1500000004 },
  { path: 'tmp/', type: 'dir', mode: 0o1777, mtime: 1500000005 },
  { path: 'root/', type: 'dir', mode: 0o700, uid: 0, gid: 0, mtime: 1500000006 },
  // Its directory comes after it: made by mkdir -p first, then given the listed mode.
  { path: 'late/child', type: 'file', content: 'c', mode: 0o644 },
  { path: 'late/', type: 'dir', mode: 0o750, uid: 7, gid: 8, mtime: 1500000007 },
  // A set-group-ID directory: entries below it would take its group unless chowned back.
  { path: 'shared/', type: 'dir', mode: 0o2775, gid: 4321, mtime: 1500000008 },
  { path: 'shared/mine', type: 'file', content: 'm', mode: 0o644, uid: 0, gid: 0 },
  { path: 'shared/sub/', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { path: 'link', type: 'symlink', linkname: 'etc/world', uid: 5, gid: 6, mtime: 1500000009 },
  { path: 'hard', type: 'hardlink', linkname: 'bin/tool' },
  { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
  { path: 'dev/fifo', type: 'fifo', mode: 0o600 },
  // Replacements within one layer: the later entry wins.
  { path: 'again', type: 'file', content: 'first', mode: 0o644 },
  { path: 'again', type: 'file', content: 'second', mode: 0o600 },
  { path: 'wasdir/', type: 'dir' },
  { path: 'wasdir/inner', type: 'file', content: 'gone' },
  { path: 'wasdir', type: 'file', content: 'now a file' },
  { path: 'wasfile', type: 'file', content: 'gone' },
  { path: 'wasfile/', type: 'dir', mode: 0o711 },
  { path: 'wasfile/inside', type: 'file', content: 'kept' },
  { path: 'old/.wh.removed', type: 'file', content: '' },
  { path: 'opaque/.wh..wh..opq', type: 'file', content: '' },
];

function modeOf(path: string): number {
  return lstatSync(path).mode & 0o7777;
}

describe('layer unpacker', () => {
  for (const [label, sizes] of CHUNKINGS) {
    test(`owners, modes, times, links and replacements come out as the tar says (${label})`, async () => {
      const root = freshDir();
      const stats = await unpackLayer(chunked(writeTar(ENTRIES), sizes), root, { native: loadNative() });
      assert.ok(stats.entries > 20);

      assert.equal(modeOf(join(root, 'etc/shadow')), 0o600);
      assert.equal(modeOf(join(root, 'etc/world')), 0o666, 'bits the umask would drop are set');
      assert.equal(readFileSync(join(root, 'etc/shadow'), 'utf8'), 'secret');
      const owned = lstatSync(join(root, 'etc/owned'));
      assert.deepEqual([owned.uid, owned.gid, owned.mode & 0o7777], [1000, 1001, 0o640]);
      assert.equal(owned.mtimeMs, 1500000003 * 1000);
      const tool = lstatSync(join(root, 'bin/tool'));
      assert.equal(tool.mode & 0o7777, 0o4755);
      assert.equal(tool.size, 70_000);
      assert.equal(tool.nlink, 2, 'the hardlink shares the inode');
      assert.equal(lstatSync(join(root, 'hard')).ino, tool.ino);
      assert.equal(modeOf(join(root, 'tmp')), 0o1777);
      assert.equal(lstatSync(join(root, 'tmp')).mtimeMs, 1500000005 * 1000);
      assert.equal(modeOf(join(root, 'root')), 0o700);
      const late = lstatSync(join(root, 'late'));
      assert.deepEqual([late.uid, late.gid, late.mode & 0o7777], [7, 8, 0o750]);
      assert.equal(late.mtimeMs, 1500000007 * 1000, 'directory times are set after their children');
      const shared = lstatSync(join(root, 'shared'));
      assert.deepEqual([shared.gid, shared.mode & 0o7777], [4321, 0o2775]);
      assert.equal(lstatSync(join(root, 'shared/mine')).gid, 0, 'the tar group wins over the set-group-ID directory');
      const sub = lstatSync(join(root, 'shared/sub'));
      assert.deepEqual([sub.gid, sub.mode & 0o7777], [0, 0o755], 'no inherited group or set-group-ID bit');
      const link = lstatSync(join(root, 'link'));
      assert.ok(link.isSymbolicLink());
      assert.equal(readlinkSync(join(root, 'link')), 'etc/world');
      assert.deepEqual([link.uid, link.gid, link.mtimeMs], [5, 6, 1500000009 * 1000]);
      const dev = lstatSync(join(root, 'dev/null'));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.mode & 0o7777, 0o666);
      assert.ok(lstatSync(join(root, 'dev/fifo')).isFIFO());
      assert.equal(modeOf(join(root, 'dev/fifo')), 0o600);
      assert.equal(readFileSync(join(root, 'again'), 'utf8'), 'second');
      assert.equal(modeOf(join(root, 'again')), 0o600);
      assert.equal(readFileSync(join(root, 'wasdir'), 'utf8'), 'now a file');
      assert.ok(lstatSync(join(root, 'wasfile')).isDirectory());
      assert.equal(modeOf(join(root, 'wasfile')), 0o711);
      assert.equal(readFileSync(join(root, 'wasfile/inside'), 'utf8'), 'kept');
      const whiteout = lstatSync(join(root, 'old/removed'));
      assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'a whiteout is a 0:0 character device');
      assert.equal(loadNative().lgetxattr(join(root, 'opaque'), 'trusted.overlay.opaque')?.toString(), 'y');
    });
  }

  test('xattrs only a host may set (trusted.*, security.* but file capabilities) are dropped; the files\' own are kept', async () => {
    const root = freshDir();
    const native = loadNative();
    // A v2 file capability (cap_net_raw+ep) as setcap writes it.
    const capability = Buffer.from([0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const tar = writeTar([
      { path: 'lower/', type: 'dir', xattrs: { 'trusted.overlay.opaque': 'y', 'trusted.overlay.redirect': '/etc' } },
      {
        path: 'lower/file',
        type: 'file',
        content: 'x',
        xattrs: { 'trusted.overlay.redirect': '/etc/shadow', 'trusted.overlay.metacopy': '', 'security.selinux': 'system_u:object_r:shadow_t:s0', 'security.capability': capability, 'user.note': 'kept' },
      },
    ]);
    const stats = await unpackLayer(chunked(tar, [1 << 30]), root);
    for (const name of ['trusted.overlay.opaque', 'trusted.overlay.redirect']) assert.equal(native.lgetxattr(join(root, 'lower'), name), undefined, name);
    for (const name of ['trusted.overlay.redirect', 'trusted.overlay.metacopy', 'security.selinux']) assert.equal(native.lgetxattr(join(root, 'lower/file'), name), undefined, name);
    assert.deepEqual(native.lgetxattr(join(root, 'lower/file'), 'security.capability'), capability);
    assert.equal(native.lgetxattr(join(root, 'lower/file'), 'user.note')?.toString(), 'kept');
    assert.deepEqual(new Set(stats.droppedXattrs), new Set(['trusted.overlay.opaque', 'trusted.overlay.redirect', 'trusted.overlay.metacopy', 'security.selinux']));
  });

  test('an image budget shared by two layers stops the second as the image goes over, and a refund takes a layer back', async () => {
    const budget = new ImageBudget('caps/test', { maxEntries: 150, maxUnpackedBytes: 1_000_000 });
    budget.countPresent({ entries: 20, unpackedSize: 0 });
    const files = (prefix: string, n: number) => writeTar(Array.from({ length: n }, (_, i) => ({ path: `${prefix}${i}`, type: 'file' as const, content: 'x' })));
    const first = layerCharger(budget.shared);
    const firstRoot = freshDir();
    const stats = await unpackLayer(chunked(files('a', 100), [1 << 30]), firstRoot, { budget: first });
    assert.equal(stats.entries, 100);
    const secondRoot = freshDir();
    const second = layerCharger(budget.shared);
    await assert.rejects(unpackLayer(chunked(files('b', 100), [1 << 30]), secondRoot, { budget: second }), (err) =>
      isBerthError(err, 'ResourceExhausted') && /image\.max_image_entries/.test(err.message));
    assert.ok(readdirSync(secondRoot).length <= 31, 'the second layer stopped at the cap, not after all of it');
    // As the layer worker does for a failed layer (its directory goes), and as for a layer taken back.
    second.refund();
    first.refund();
    const third = await unpackLayer(chunked(files('c', 100), [1 << 30]), freshDir(), { budget: layerCharger(budget.shared) });
    assert.equal(third.entries, 100, 'with the first layer refunded the image is under the cap again');
    await assert.rejects(unpackLayer(chunked(writeTar([{ path: 'big', type: 'file', content: Buffer.alloc(1_000_001) }]), [1 << 30]), freshDir(), { budget: layerCharger(budget.shared) }), (err) =>
      isBerthError(err, 'ResourceExhausted') && /image\.max_image_unpacked_bytes/.test(err.message));
  });

  test('global PAX records are bounded over the whole archive, not only per header', async () => {
    // Entries whose PAX header is global ('g'): each adds its keys to every later entry.
    const globalRecords = (i: number): Buffer => {
      const tar = writeTar([{ path: `g${i}`, type: 'file', content: 'x', pax: { [`berth.test.key${i}`]: 'v'.repeat(600_000) } }]);
      tar.write('g', 156, 1, 'ascii');
      tar.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of tar.subarray(0, 512)) sum += byte;
      tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
      return tar.subarray(0, tar.length - 1024);
    };
    const end = Buffer.alloc(1024);
    const one = await unpackLayer(chunked(Buffer.concat([globalRecords(0), end]), [1 << 30]), freshDir());
    assert.equal(one.entries, 1);
    await assert.rejects(unpackLayer(chunked(Buffer.concat([globalRecords(0), globalRecords(1), end]), [1 << 30]), freshDir()), /global PAX records larger than 1 MiB/);
  });

  test('a layer root that is set-group-ID does not give its group to entries', async () => {
    const root = freshDir();
    chownSync(root, 0, 2222);
    chmodSync(root, 0o2755);
    await unpackLayer(chunked(writeTar([{ path: 'f', type: 'file', content: 'x', uid: 0, gid: 0 }, { path: 'd/', type: 'dir', mode: 0o755 }]), [1 << 20]), root);
    assert.equal(lstatSync(join(root, 'f')).gid, 0);
    assert.deepEqual([lstatSync(join(root, 'd')).gid, modeOf(join(root, 'd'))], [0, 0o755]);
  });

  test('a truncated tar fails', async () => {
    const root = freshDir();
    const tar = writeTar([{ path: 'big', type: 'file', content: Buffer.alloc(10_000, 1) }]);
    await assert.rejects(unpackLayer(chunked(tar.subarray(0, 4096), [1000]), root), /truncated/);
  });

  test('a write below a file this layer made fails and creates nothing through it', async () => {
    const root = freshDir();
    const tar = writeTar([
      { path: 'f', type: 'file', content: 'x' },
      { path: 'f/under', type: 'file', content: 'y' },
    ]);
    await assert.rejects(unpackLayer(chunked(tar, [300]), root), /would be written through/);
    assert.ok(!existsSync(join(root, 'f/under')));
  });

  test('an empty PAX header is read whatever the chunking (one ending exactly at a chunk boundary included)', async () => {
    const tar = Buffer.concat([emptyPaxHeader(), writeTar([{ path: 'after-pax', type: 'file', content: 'x' }])]);
    for (const [, sizes] of CHUNKINGS) {
      const root = freshDir();
      await unpackLayer(chunked(tar, sizes), root);
      assert.equal(readFileSync(join(root, 'after-pax'), 'utf8'), 'x');
    }
  });
});

/** A ustar header of type "x" (a PAX extended header) with no records. */
function emptyPaxHeader(): Buffer {
  const block = Buffer.alloc(512);
  block.write('PaxHeaders/empty', 0, 'ascii');
  block.write('0000644\0', 100, 'ascii');
  for (const offset of [108, 116]) block.write('0000000\0', offset, 'ascii');
  block.write('00000000000\0', 124, 'ascii');
  block.write('00000000000\0', 136, 'ascii');
  block.write('x', 156, 'ascii');
  block.write('ustar\0' + '00', 257, 'ascii');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}
