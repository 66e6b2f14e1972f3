// `berthd images import` through the running daemon's admin socket: a docker
// save archive (layers repeated through symlinks, as older Docker writes them)
// and an OCI image layout (a directory, and a tar on standard input), each made
// by the test, then pods and containers run from the imported images with no
// registry configured. Bad archives are refused with a reason and the daemon
// keeps serving.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTHD_ENTRY, startBerthd, type BerthdProcess } from '../support/berthd-process';
import { buildBusyboxImage, buildIndex, type Blob } from '../support/oci-image-builder';
import { writeTar, type TarEntry } from '../support/tar-writer';
import { outputOfContainerFrom, removeAllPods } from './sandbox-fixture';

const hex = (digest: string): string => digest.slice('sha256:'.length);

function importCli(berthd: BerthdProcess, source: string, input?: Buffer): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'import', '--config', berthd.configPath, source], { input, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A container from the image (host network, no CNI); what it prints of the image config's FROM_ARCHIVE. */
function runFrom(berthd: BerthdProcess, image: string, name: string): Promise<string> {
  return outputOfContainerFrom(berthd, image, name, ['sh', '-c', 'echo "$FROM_ARCHIVE"']);
}

describe('berthd images import', () => {
  let berthd: BerthdProcess;
  let dir: string;
  before(async () => {
    dir = mkdtempSync('/tmp/berth-import-');
    berthd = await startBerthd();
  });
  after(async () => {
    if (berthd) await removeAllPods(berthd).catch(() => undefined);
    await berthd?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the admin socket is root-only', () => {
    const socket = join(berthd.state, 'admin', 'berth-admin.sock');
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.equal(statSync(join(berthd.state, 'admin')).mode & 0o777, 0o700);
  });

  test('a docker save archive is imported with its tags, and a container runs from it without a registry', async () => {
    const image = buildBusyboxImage({ format: 'docker', compression: 'none', config: { Cmd: ['sh'], Env: ['FROM_ARCHIVE=docker'] } });
    const layer = image.layers[0];
    const other = buildBusyboxImage({ format: 'docker', compression: 'none', config: { Cmd: ['sh'], Env: ['FROM_ARCHIVE=second'] } });
    // Older docker save writes a repeated layer once and links the other copy to it.
    const entries: TarEntry[] = [
      { path: `${hex(image.config.digest)}.json`, type: 'file', content: image.config.data },
      { path: `${hex(other.config.digest)}.json`, type: 'file', content: other.config.data },
      { path: 'aaaa/', type: 'dir' },
      { path: 'aaaa/layer.tar', type: 'file', content: layer.data },
      { path: 'bbbb/', type: 'dir' },
      { path: 'bbbb/layer.tar', type: 'symlink', linkname: '../aaaa/layer.tar' },
      {
        path: 'manifest.json',
        type: 'file',
        content: JSON.stringify([
          { Config: `${hex(image.config.digest)}.json`, RepoTags: ['example.test/imported/docker:v1'], Layers: ['aaaa/layer.tar'] },
          { Config: `${hex(other.config.digest)}.json`, RepoTags: ['example.test/imported/second:v1'], Layers: ['bbbb/layer.tar'] },
        ]),
      },
    ];
    const archive = join(dir, 'docker-save.tar');
    writeFileSync(archive, writeTar(entries));

    const r = importCli(berthd, archive);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^imported ${image.config.digest} example.test/imported/docker:v1 example.test/imported/docker@sha256:[0-9a-f]{64}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^imported ${other.config.digest} example.test/imported/second:v1 `, 'm'));

    const { images } = await berthd.client.call('ListImages', {});
    const listed = images.find((i) => i.id === image.config.digest);
    assert.ok(listed, 'ListImages shows the imported image');
    assert.deepEqual(listed.repo_tags, ['example.test/imported/docker:v1']);
    assert.equal(listed.repo_digests.length, 1);
    assert.equal(await runFrom(berthd, 'example.test/imported/docker:v1', 'from-docker-save'), 'docker\n');
  });

  test('an OCI layout directory is imported through its index, named by its annotation, and runs', async () => {
    const image = buildBusyboxImage({ format: 'oci', compression: 'gzip', config: { Cmd: ['sh'], Env: ['FROM_ARCHIVE=oci'] } });
    const index = buildIndex([image]);
    const layout = join(dir, 'layout');
    mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
    for (const blob of [image.config, image.manifest, index, ...image.layers] as Blob[]) writeFileSync(join(layout, 'blobs', 'sha256', hex(blob.digest)), blob.data);
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: index.mediaType, digest: index.digest, size: index.size,
        annotations: { 'io.containerd.image.name': 'example.test/imported/oci:v2', 'org.opencontainers.image.ref.name': 'v2' },
      }],
    }));

    const r = importCli(berthd, layout);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^imported ${image.config.digest} example.test/imported/oci:v2 example.test/imported/oci@${index.digest}$`, 'm'));
    const status = await berthd.client.call('ImageStatus', { image: { image: 'example.test/imported/oci:v2' } });
    assert.equal(status.image?.id, image.config.digest);
    assert.equal(await runFrom(berthd, 'example.test/imported/oci:v2', 'from-oci-layout'), 'oci\n');
  });

  test('an OCI layout tar on standard input whose only name is a bare tag is imported by id', async () => {
    const image = buildBusyboxImage({ format: 'oci', compression: 'zstd', config: { Cmd: ['sh'], Env: ['FROM_ARCHIVE=stdin'] } });
    const entries: TarEntry[] = [
      { path: 'oci-layout', type: 'file', content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
      { path: 'blobs/', type: 'dir' },
      { path: 'blobs/sha256/', type: 'dir' },
      ...[image.config, image.manifest, ...image.layers].map((b): TarEntry => ({ path: `blobs/sha256/${hex(b.digest)}`, type: 'file', content: b.data })),
      {
        path: 'index.json',
        type: 'file',
        content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
      },
    ];
    const r = importCli(berthd, '-', writeTar(entries));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `imported ${image.config.digest}\n`);
    assert.equal(await runFrom(berthd, image.config.digest, 'from-stdin'), 'stdin\n');
  });

  test('an archive that is neither format, or whose names leave it, is refused with the reason and berthd keeps serving', async () => {
    const neither = importCli(berthd, '-', writeTar([{ path: 'hello.txt', type: 'file', content: 'hi' }]));
    assert.equal(neither.status, 1);
    assert.match(neither.stderr, /neither a docker save archive \(manifest\.json\) nor an OCI image layout \(index\.json\)/);
    const escaping = importCli(berthd, '-', writeTar([{ path: '../escape.txt', type: 'file', content: 'x' }]));
    assert.equal(escaping.status, 1);
    assert.match(escaping.stderr, /entry "\.\.\/escape\.txt" leaves the archive/);
    const badDigest = importCli(berthd, '-', writeTar([
      { path: 'index.json', type: 'file', content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 }] }) },
      { path: `blobs/sha256/${'0'.repeat(64)}`, type: 'file', content: '{}' },
    ]));
    assert.equal(badDigest.status, 1);
    assert.match(badDigest.stderr, /does not match its digest/);
    const version = await berthd.client.call('Version', { version: '0.1.0' });
    assert.equal(version.runtime_name, 'berth');
  });

  test('an exported image is an OCI layout that GNU tar reads and another berthd imports and runs, digests kept', async () => {
    const archive = join(dir, 'exported.tar');
    const r = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'export', '--config', berthd.configPath, 'example.test/imported/oci:v2', archive], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const listing = spawnSync('tar', ['-tf', archive], { encoding: 'utf8' }).stdout.split('\n');
    for (const name of ['oci-layout', 'index.json', 'manifest.json']) assert.ok(listing.includes(name), `${name} in ${listing.join(' ')}`);
    const original = await berthd.client.call('ImageStatus', { image: { image: 'example.test/imported/oci:v2' } });

    const other = await startBerthd();
    try {
      const imported = importCli(other, archive);
      assert.equal(imported.status, 0, imported.stderr);
      const status = await other.client.call('ImageStatus', { image: { image: 'example.test/imported/oci:v2' } });
      assert.equal(status.image?.id, original.image?.id);
      // The index it was imported through goes out with it (this platform's blobs only): the digest stays.
      assert.deepEqual(status.image?.repo_digests, original.image?.repo_digests);
      assert.equal(await runFrom(other, 'example.test/imported/oci:v2', 'from-export'), 'oci\n');
      // An image whose blobs berth holds as its manifest names them keeps its manifest digest.
      const dockerArchive = join(dir, 'exported-docker.tar');
      const before = await berthd.client.call('ImageStatus', { image: { image: 'example.test/imported/docker:v1' } });
      assert.equal(spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'export', '--config', berthd.configPath, 'example.test/imported/docker:v1', dockerArchive]).status, 0);
      assert.equal(importCli(other, dockerArchive).status, 0);
      const after = await other.client.call('ImageStatus', { image: { image: 'example.test/imported/docker:v1' } });
      assert.deepEqual(after.image?.repo_digests, before.image?.repo_digests);
    } finally {
      await removeAllPods(other).catch(() => undefined);
      await other.cleanup();
    }
    const missing = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'export', '--config', berthd.configPath, 'example.test/none:1', join(dir, 'none.tar')], { encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /export failed: image "example\.test\/none:1" not found/);
    assert.ok(!existsSync(join(dir, 'none.tar')), 'a failed export leaves no file');
  });

  test('without a running berthd the command says what it could not reach', () => {
    const r = spawnSync(process.execPath, [BERTHD_ENTRY, 'images', 'import', '--admin-socket', join(dir, 'nothing.sock'), '-'], { input: '', encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach berthd's admin socket .*nothing\.sock/);
  });
});
