// Image archives in and out of a running berthd with no registry anywhere:
// `berthd images export` writes an OCI layout tar that GNU tar reads and whose
// blobs match their names, and that imports back to the same ids, tags and
// digests (an index on top keeps its digest); Docker 25+'s docker save (an OCI
// layout inside) and a gzipped docker save import and run; an archive with one
// bad image records none of its images and leaves no layer, blob or staged
// file behind; an export of an unknown name fails before writing a file; an
// offline import fills a store no berthd runs on.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { BERTHD_ENTRY, BerthdProcess, startBerthd } from '../support/berthd-process';
import { dockerSaveEntries, ociLayoutEntries } from '../support/image-archive-builder';
import { buildBusyboxImage, buildIndex, buildLayer, type BuiltImage } from '../support/oci-image-builder';
import { writeTar } from '../support/tar-writer';
import { outputOfContainerFrom, removeAllPods } from './sandbox-fixture';

function cli(berthd: BerthdProcess, args: string[], input?: Buffer): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', ...args, '--config', berthd.configPath], { input, timeout: 120_000, maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** A busybox image with a layer of its own (no other test shares it): /etc/label holds `label` and this run's marker; FROM_ARCHIVE is `label`. */
function uniqueImage(label: string, options: Parameters<typeof buildBusyboxImage>[0] = {}): BuiltImage {
  return buildBusyboxImage({
    ...options,
    extraLayers: [[{ path: 'etc/', type: 'dir' }, { path: 'etc/label', type: 'file', content: `${label} ${RUN}\n` }]],
    config: { Cmd: ['sh'], Env: ['PATH=/bin', `FROM_ARCHIVE=${label}`] },
  });
}

const RUN = `${process.pid}-${Date.now()}`;
const PRINT_LABELS = ['sh', '-c', 'echo "$FROM_ARCHIVE"; cat /etc/label'];

interface Listed {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
}

async function listed(berthd: BerthdProcess, id: string): Promise<Listed | undefined> {
  const { images } = await berthd.client.call('ListImages', {});
  const image = images.find((i) => i.id === id);
  return image && { id: image.id, repo_tags: [...image.repo_tags].sort(), repo_digests: [...image.repo_digests].sort() };
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

describe('image archives without a registry', () => {
  let berthd: BerthdProcess;
  let dir: string;
  before(async () => {
    dir = mkdtempSync('/tmp/berth-archive-');
    berthd = await startBerthd();
  });
  after(async () => {
    if (berthd) await removeAllPods(berthd).catch(() => undefined);
    await berthd?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an export imports back to the same ids, tags and digests, and containers run from it', async () => {
    const oci = uniqueImage('roundtrip-oci');
    const index = buildIndex([oci]);
    const docker = uniqueImage('roundtrip-docker', { format: 'docker', compression: 'none' });
    assert.equal(cli(berthd, ['import', '-'], writeTar(ociLayoutEntries([{ image: oci, index, names: ['example.test/rt/oci:v1'] }]))).status, 0);
    assert.equal(cli(berthd, ['import', '-'], writeTar(dockerSaveEntries([{ image: docker, names: ['example.test/rt/docker:v1'] }]))).status, 0);
    const before = [await listed(berthd, oci.config.digest), await listed(berthd, docker.config.digest)];
    assert.deepEqual(before[0]?.repo_digests, [`example.test/rt/oci@${index.digest}`], 'the index on top names the image');

    const archive = join(dir, 'roundtrip.tar');
    const exported = cli(berthd, ['export', 'example.test/rt/oci:v1', 'example.test/rt/docker:v1', '-o', archive]);
    assert.equal(exported.status, 0, exported.stderr);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('partial')), [], 'no partial file is left beside the archive');

    // GNU tar reads it; every blob is what its name says; index.json names each image as containerd does.
    const unpacked = join(dir, 'roundtrip');
    mkdirSync(unpacked);
    const untar = spawnSync('tar', ['-xf', archive, '-C', unpacked], { encoding: 'utf8' });
    assert.equal(untar.status, 0, untar.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(unpacked, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    for (const hex of readdirSync(join(unpacked, 'blobs', 'sha256'))) {
      assert.equal(sha256(readFileSync(join(unpacked, 'blobs', 'sha256', hex))), `sha256:${hex}`);
    }
    const indexJson = JSON.parse(readFileSync(join(unpacked, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.deepEqual(
      indexJson.manifests.map((m) => [m.annotations['io.containerd.image.name'], m.annotations['org.opencontainers.image.ref.name'], m.digest]),
      [['example.test/rt/oci:v1', 'v1', index.digest], ['example.test/rt/docker:v1', 'v1', before[1]!.repo_digests[0].split('@')[1]]],
    );
    const dockerManifest = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    assert.deepEqual(dockerManifest.map((m) => [m.Config, m.RepoTags, m.Layers.length]), [
      [`blobs/sha256/${oci.config.digest.slice(7)}`, ['example.test/rt/oci:v1'], 2],
      [`blobs/sha256/${docker.config.digest.slice(7)}`, ['example.test/rt/docker:v1'], 2],
    ]);

    // The same export to standard output is the same bytes.
    const toStdout = cli(berthd, ['export', 'example.test/rt/oci:v1', 'example.test/rt/docker:v1', '-o', '-']);
    assert.equal(toStdout.status, 0, toStdout.stderr);
    assert.ok(toStdout.stdout.equals(readFileSync(archive)), 'an export is deterministic');

    for (const id of [oci.config.digest, docker.config.digest]) await berthd.client.call('RemoveImage', { image: { image: id } });
    assert.equal(await listed(berthd, oci.config.digest), undefined);
    const reimported = cli(berthd, ['import', archive]);
    assert.equal(reimported.status, 0, reimported.stderr);
    assert.deepEqual([await listed(berthd, oci.config.digest), await listed(berthd, docker.config.digest)], before);
    assert.equal(await outputOfContainerFrom(berthd, 'example.test/rt/oci:v1', 'rt-oci', PRINT_LABELS), `roundtrip-oci\nroundtrip-oci ${RUN}\n`);
    assert.equal(await outputOfContainerFrom(berthd, 'example.test/rt/docker:v1', 'rt-docker', PRINT_LABELS), `roundtrip-docker\nroundtrip-docker ${RUN}\n`);
  });

  test('an export by id carries every tag of the image; an unknown name fails before any file is written', async () => {
    const image = uniqueImage('by-id', { compression: 'zstd' });
    assert.equal(cli(berthd, ['import', '-'], writeTar(ociLayoutEntries([{ image, names: ['example.test/id/a:1', 'example.test/id/b:2'] }]))).status, 0);
    const byId = cli(berthd, ['export', image.config.digest, '-o', '-']);
    assert.equal(byId.status, 0, byId.stderr);
    const listing = spawnSync('tar', ['-xOf', '-', 'index.json'], { input: byId.stdout });
    const names = (JSON.parse(listing.stdout.toString()) as { manifests: { annotations: Record<string, string> }[] }).manifests.map((m) => m.annotations['io.containerd.image.name']);
    assert.deepEqual(names, ['example.test/id/a:1', 'example.test/id/b:2']);

    const target = join(dir, 'never.tar');
    const unknown = cli(berthd, ['export', 'example.test/id/a:1', 'example.test/nope:1', '-o', target]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /export failed: image "example\.test\/nope:1" not found/);
    assert.equal(existsSync(target), false);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('never')), []);
  });

  test("Docker 25's docker save (an OCI layout inside) and a gzipped docker save are imported with their names and run", async () => {
    const modern = uniqueImage('docker-25', { compression: 'none' });
    const r = cli(berthd, ['import', '-'], writeTar(dockerSaveEntries([{ image: modern, names: ['example.test/modern:v25'] }], 'oci')));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual((await listed(berthd, modern.config.digest))?.repo_tags, ['example.test/modern:v25']);
    assert.equal(await outputOfContainerFrom(berthd, 'example.test/modern:v25', 'docker-25', PRINT_LABELS), `docker-25\ndocker-25 ${RUN}\n`);

    const zipped = uniqueImage('gzipped', { format: 'docker', compression: 'none' });
    const archive = join(dir, 'saved.tar.gz');
    writeFileSync(archive, gzipSync(writeTar(dockerSaveEntries([{ image: zipped, names: ['busybox-gz:latest'] }]))));
    const g = cli(berthd, ['import', archive]);
    assert.equal(g.status, 0, g.stderr);
    assert.deepEqual((await listed(berthd, zipped.config.digest))?.repo_tags, ['docker.io/library/busybox-gz:latest'], 'names are normalized like pulled ones');
    assert.equal(await outputOfContainerFrom(berthd, 'busybox-gz', 'gzipped', PRINT_LABELS), `gzipped\ngzipped ${RUN}\n`);
  });

  test('an archive with one bad image records none of its images and leaves no layer, blob or staged file behind', async () => {
    const layersDir = join(berthd.root, 'layers');
    const blobsDir = join(berthd.root, 'content', 'sha256');
    const before = { layers: readdirSync(layersDir).sort(), blobs: readdirSync(blobsDir).sort(), images: (await berthd.client.call('ListImages', {})).images.length };
    const good = uniqueImage('all-or-nothing-good', { format: 'docker', compression: 'none' });
    // The bad image's config names the diff id of other content than its layer holds.
    const honest = uniqueImage('all-or-nothing-bad', { format: 'docker', compression: 'none' });
    const swapped = buildLayer([{ path: 'etc/', type: 'dir' }, { path: 'etc/label', type: 'file', content: `not what the config says ${RUN}\n` }], 'none', 'docker');
    const bad: BuiltImage = { ...honest, layers: [honest.layers[0], { ...swapped, diffId: honest.layers[1].diffId }] };
    const r = cli(berthd, ['import', '-'], writeTar(dockerSaveEntries([{ image: good, names: ['example.test/aon/good:1'] }, { image: bad, names: ['example.test/aon/bad:1'] }])));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /import failed: layer sha256:[0-9a-f]{64}: .*diff id/);
    assert.equal(await listed(berthd, good.config.digest), undefined, 'the good image of a bad archive is not recorded');
    assert.equal((await berthd.client.call('ListImages', {})).images.length, before.images);
    assert.deepEqual(readdirSync(layersDir).sort(), before.layers, 'its unpacked layer was collected');
    assert.deepEqual(readdirSync(blobsDir).sort(), before.blobs);
    assert.deepEqual(readdirSync(join(berthd.root, 'import')), [], 'nothing staged is left');

    const notGzip = cli(berthd, ['import', '-'], Buffer.from([0x1f, 0x8b, 0x08, 0, 1, 2, 3, 4, 5, 6]));
    assert.equal(notGzip.status, 1);
    assert.match(notGzip.stderr, /import failed: image archive: the gzip stream is broken/);
  });
});

describe('an offline import (an image build, where berthd cannot run)', () => {
  let berthd: BerthdProcess;
  before(() => {
    berthd = new BerthdProcess();
  });
  after(async () => {
    if (berthd.child) await removeAllPods(berthd).catch(() => undefined);
    await berthd.cleanup();
  });

  test('fills the store with no berthd running; the berthd started on it lists and runs the image; a running berthd is refused', async () => {
    const image = uniqueImage('offline', { format: 'docker', compression: 'none' });
    const archive = writeTar(dockerSaveEntries([{ image, names: ['example.test/offline:v1'] }]));
    const r = cli(berthd, ['import', '--offline', '-'], archive);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.toString(), new RegExp(`^imported ${image.config.digest} example\\.test/offline:v1 `));

    await berthd.start();
    assert.deepEqual((await listed(berthd, image.config.digest))?.repo_tags, ['example.test/offline:v1']);
    assert.equal(await outputOfContainerFrom(berthd, 'example.test/offline:v1', 'offline', PRINT_LABELS), `offline\noffline ${RUN}\n`);

    const refused = cli(berthd, ['import', '--offline', '-'], archive);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /berthd is running \(.*berth-admin\.sock answers\): import through it, without --offline/);
  });
});
