// Layer collection on a real directory tree and a real (in-memory) SQLite
// database: what nothing keeps goes, what an image or a container keeps stays,
// and nothing goes while a pull runs.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, promises as fsp, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { silentLog } from '../../runtime/common/log';
import { ContentBlobs } from '../../runtime/image/content-blobs';
import { ImageRows } from '../../runtime/image/image-rows';
import { LayerDirectories } from '../../runtime/image/layer-directories';
import { LayerGc } from '../../runtime/image/layer-gc';
import { BerthDatabase } from '../../runtime/store/database';

const scratch = mkdtempSync('/tmp/berth-layer-gc-test-');
after(() => rmSync(scratch, { recursive: true, force: true }));

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
let roots = 0;

async function setUp() {
  const root = join(scratch, `root${roots++}`);
  const rows = new ImageRows(new BerthDatabase(':memory:'));
  const layers = new LayerDirectories(root);
  const blobs = new ContentBlobs(root);
  layers.init();
  blobs.init();
  /** An unpacked layer "c" whose blob is "c" too, on disk and in the rows. */
  const addLayer = async (c: string): Promise<{ dir: string; blob: string }> => {
    const dirId = c.repeat(12);
    mkdirSync(layers.diffOf(dirId), { recursive: true });
    await blobs.write(digest(c), Buffer.from(c));
    rows.putLayer({ diffId: digest(c), dirId, blobDigest: digest(c), compressedSize: 1, unpackedSize: 1, entries: 1 });
    return { dir: layers.diffOf(dirId), blob: blobs.pathOf(digest(c)) };
  };
  const listImage = (id: string, diffIds: string[]): void =>
    rows.putImage({ id, manifestDigest: digest('f'), size: 1, configJson: '{}', annotations: {}, diffIds, blobs: [], names: [] });
  return { rows, gc: new LayerGc(rows, layers, blobs, silentLog), addLayer, listImage, layers, blobs };
}

describe('layer collection', () => {
  test('layers and blobs nothing keeps are removed; an image keeps its layers', async () => {
    const { gc, addLayer, listImage } = await setUp();
    const kept = await addLayer('a');
    const loose = await addLayer('b');
    listImage(digest('1'), [digest('a')]);
    await gc.collect();
    assert.ok(existsSync(kept.dir) && existsSync(kept.blob));
    assert.ok(!existsSync(loose.dir) && !existsSync(loose.blob));
  });

  test('a container holds its image\'s layers after the image is removed, until it lets go', async () => {
    const { rows, gc, addLayer, listImage } = await setUp();
    const layer = await addLayer('a');
    listImage(digest('1'), [digest('a')]);
    gc.holdLayers('container-1', digest('1'));
    rows.deleteImage(digest('1'));
    await gc.collect();
    assert.ok(existsSync(layer.dir), 'a held layer stays');
    await gc.releaseLayers('container-1');
    assert.ok(!existsSync(layer.dir), 'released, it is collected');
  });

  test('collection asked for during a pull waits until the last pull is over', async () => {
    const { gc, addLayer } = await setUp();
    const layer = await addLayer('a');
    let releaseSecond!: () => void;
    const second = gc.whilePulling(() => new Promise<void>((r) => (releaseSecond = r)));
    await gc.whilePulling(async () => {
      await gc.collect();
      assert.ok(existsSync(layer.dir), 'not while this pull runs');
    });
    assert.ok(existsSync(layer.dir), 'not while another pull still runs');
    releaseSecond();
    await second;
    assert.ok(!existsSync(layer.dir), 'once the last pull is over');
  });
});

describe('layer directories', () => {
  test('a layer gets the shortest prefix of its diff id that no other layer and no stray directory has', () => {
    const layers = new LayerDirectories(join(scratch, `root${roots++}`));
    layers.init();
    const id = `sha256:${'0123456789ab'}cdef${'5'.repeat(48)}`;
    assert.equal(layers.pickDirId(id, () => undefined), '0123456789ab');
    assert.equal(layers.pickDirId(id, (dirId) => (dirId === '0123456789ab' ? id : undefined)), '0123456789ab', 'its own directory is its own');
    assert.equal(layers.pickDirId(id, (dirId) => (dirId === '0123456789ab' ? digest('9') : undefined)), '0123456789abcdef');
    mkdirSync(join(layers.dir, '0123456789ab'));
    assert.equal(layers.pickDirId(id, () => undefined), '0123456789abcdef', 'a directory no row owns is not taken over');
  });

});

describe('leftovers of interrupted work', () => {
  test('directories no layer row owns, temporary unpacks and temporary blobs go; owned layers and needed blobs stay', async () => {
    const { rows, gc, addLayer, listImage, layers, blobs } = await setUp();
    const owned = await addLayer('a');
    listImage(digest('1'), [digest('a')]);
    // A crash after an unpack's rename into place, before its row: a complete layer directory nobody owns.
    const stray = join(layers.dir, 'bbbbbbbbbbbb');
    mkdirSync(join(stray, 'diff', 'etc'), { recursive: true });
    writeFileSync(join(stray, 'diff', 'etc', 'passwd'), 'x');
    mkdirSync(join(layers.tempRootFor('abc'), 'diff'), { recursive: true });
    writeFileSync(blobs.tempPathFor(digest('c')), 'partial');
    // A blob adopted before its row existed.
    await blobs.write(digest('d'), Buffer.from('d'));
    await gc.collectStrays();
    assert.ok(existsSync(owned.dir) && existsSync(owned.blob));
    assert.ok(!existsSync(stray), 'the unowned layer directory');
    assert.ok(!existsSync(layers.tempRootFor('abc')), 'the interrupted unpack');
    assert.deepEqual(readdirSync(blobs.tempDir), [], 'the interrupted blob write');
    assert.ok(!existsSync(blobs.pathOf(digest('d'))), 'the blob nothing needs');
    assert.equal(rows.dirIdOwner('aaaaaaaaaaaa'), digest('a'));
  });

  test('leftovers are not listed while a pull runs: its files are not taken for them', async () => {
    const { gc, layers } = await setUp();
    const stray = join(layers.dir, 'cccccccccccc');
    mkdirSync(stray);
    let finishPull!: () => void;
    const pull = gc.whilePulling(async () => {
      const inFlight = layers.tempRootFor('pulling');
      mkdirSync(inFlight);
      await gc.collectStrays();
      assert.ok(existsSync(inFlight) && existsSync(stray), 'nothing goes while the pull runs');
      await new Promise<void>((r) => (finishPull = r));
      await fsp.rm(inFlight, { recursive: true });
    });
    await new Promise((r) => setImmediate(r));
    finishPull();
    await pull;
    assert.ok(!existsSync(stray), 'collected once the pull is over');
  });
});
