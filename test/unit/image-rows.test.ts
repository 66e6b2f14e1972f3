// Image rows in a real (in-memory) SQLite database: names, layers, holds and
// what collection may remove.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ImageRows, type LayerRow, type NewImage } from '../../runtime/image/image-rows';
import { BerthDatabase } from '../../runtime/store/database';

const digest = (c: string): string => `sha256:${c.repeat(64)}`;

/** Layer "a" unpacks from blob "b", layer "b" from blob "c", and so on. */
function layer(c: string, unpackedSize = 100, entries = 10): LayerRow {
  const blob = String.fromCharCode(c.charCodeAt(0) + 1);
  return { diffId: digest(c), dirId: c.repeat(12), blobDigest: digest(blob), compressedSize: 40, unpackedSize, entries };
}

function image(id: string, diffIds: string[], names: NewImage['names']): NewImage {
  return { id, manifestDigest: digest('f'), size: 123, configJson: '{"rootfs":{"type":"layers","diff_ids":[]}}', annotations: { a: 'b' }, diffIds, blobs: [{ digest: digest('e'), size: 5 }], names };
}

function freshRows(): ImageRows {
  return new ImageRows(new BerthDatabase(':memory:'));
}

describe('image rows', () => {
  test('an image is found by id, id prefix and names; a tag pulled again moves to the new image', () => {
    const rows = freshRows();
    rows.putImage(image(digest('1'), [], [{ name: 'r/app:v1', kind: 'tag' }, { name: 'r/app@x', kind: 'digest' }]));
    rows.putImage(image(digest('2'), [], [{ name: 'r/app:v1', kind: 'tag' }]));
    assert.equal(rows.image(digest('1'))?.annotationsJson, '{"a":"b"}');
    assert.equal(rows.image(digest('1'))?.pinned, false);
    assert.equal(rows.imageIdByName('r/app:v1', 'tag'), digest('2'));
    assert.equal(rows.imageIdByName('r/app@x', 'digest'), digest('1'));
    assert.equal(rows.imageIdByName('r/app:v1', 'digest'), undefined);
    assert.deepEqual(rows.namesOf(digest('1')), [{ name: 'r/app@x', kind: 'digest' }]);
    assert.deepEqual(rows.imagesWithIdPrefix('sha256:11').map((r) => r.id), [digest('1')]);
    assert.equal(rows.imagesWithIdPrefix('sha256:').length, 2, 'two are enough to call a prefix ambiguous');
    assert.deepEqual(rows.allImages().map((r) => r.id), [digest('1'), digest('2')]);
    rows.deleteName('r/app@x');
    assert.deepEqual(rows.namesOf(digest('1')), []);
    rows.deleteImage(digest('2'));
    assert.equal(rows.imageIdByName('r/app:v1', 'tag'), undefined, 'names go with their image');
  });

  test('an image lists its layers base first; only unpacked ones come back, every listed one is counted', () => {
    const rows = freshRows();
    rows.putLayer(layer('a'));
    rows.putLayer(layer('b'));
    rows.putImage(image(digest('1'), [digest('b'), digest('a'), digest('c')], []));
    assert.deepEqual(rows.layersOf(digest('1')).map((l) => l.diffId), [digest('b'), digest('a')]);
    assert.equal(rows.layerCountOf(digest('1')), 3);
    assert.deepEqual(rows.layer(digest('a')), layer('a'));
    assert.equal(rows.dirIdOwner('aaaaaaaaaaaa'), digest('a'));
    assert.equal(rows.dirIdOwner('cccccccccccc'), undefined);
  });

  test('a layer stays out of collection while an image lists it or a holder holds it', () => {
    const rows = freshRows();
    rows.putLayer(layer('a'));
    rows.putLayer(layer('b'));
    rows.putLayer(layer('d'));
    rows.putImage(image(digest('1'), [digest('a'), digest('b')], []));
    assert.deepEqual(rows.unusedLayers().map((l) => l.diffId), [digest('d')]);
    rows.hold('container-1', digest('1'));
    rows.deleteImage(digest('1'));
    assert.deepEqual(rows.unusedLayers().map((l) => l.diffId), [digest('d')], 'held layers outlive their image');
    rows.release('container-1');
    assert.deepEqual(rows.unusedLayers().map((l) => l.diffId).sort(), [digest('a'), digest('b'), digest('d')]);
  });

  test('blobs an image or an unpacked layer needs are needed; usage sums what unpacking measured', () => {
    const rows = freshRows();
    rows.putLayer(layer('a', 1000, 7));
    rows.putLayer(layer('b', 24, 3));
    rows.putImage(image(digest('1'), [digest('a')], []));
    assert.deepEqual([...rows.neededBlobs()].sort(), [digest('b'), digest('c'), digest('e')]);
    assert.deepEqual(rows.layerTotals(), { layers: 2, unpackedBytes: 1024, entries: 10 });
    rows.deleteLayer(digest('a'));
    assert.deepEqual(rows.layerTotals(), { layers: 1, unpackedBytes: 24, entries: 3 });
  });

  test('the tables are made once: a second ImageRows on the same database sees the first one\'s rows', () => {
    const db = new BerthDatabase(':memory:');
    new ImageRows(db).putLayer(layer('a'));
    assert.deepEqual(new ImageRows(db).layer(digest('a')), layer('a'));
  });

  test('every write to images or their names moves the generation; reads do not', () => {
    const rows = freshRows();
    const seen = [rows.generation];
    rows.putImage(image(digest('1'), [], [{ name: 'r/app:v1', kind: 'tag' }]));
    seen.push(rows.generation);
    rows.allImages();
    rows.namesOf(digest('1'));
    assert.equal(rows.generation, seen[1], 'reading changes nothing');
    rows.deleteName('r/app:v1');
    seen.push(rows.generation);
    rows.deleteImage(digest('1'));
    seen.push(rows.generation);
    assert.equal(new Set(seen).size, 4, `each write moved it: ${seen.join(', ')}`);
  });
});
