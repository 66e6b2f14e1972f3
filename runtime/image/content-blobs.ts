// Blobs by digest (manifests, configs, compressed layers) under
// <root>/content/sha256/<hex>: what containerd calls its content store. Files
// come into being under content/tmp and are renamed into place whole, so a
// blob under sha256/ is always complete.
import { createHash, randomBytes } from 'node:crypto';
import { constants, createWriteStream, existsSync, mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { invalidArgument } from '../errors';

export class ContentBlobs {
  readonly dir: string;
  readonly tempDir: string;

  constructor(root: string) {
    this.dir = join(root, 'content', 'sha256');
    this.tempDir = join(root, 'content', 'tmp');
  }

  /** Creates the directories; what an interrupted write left is collected in the background (LayerGc.collectStrays). */
  init(): void {
    for (const dir of [this.dir, this.tempDir]) mkdirSync(dir, { recursive: true, mode: 0o711 });
  }

  /** Names in content/tmp: blobs being written, or left by a crash. */
  tempEntries(): Promise<string[]> {
    return fsp.readdir(this.tempDir);
  }

  async removeTemp(name: string): Promise<void> {
    await fsp.rm(join(this.tempDir, name), { recursive: true, force: true });
  }

  pathOf(digest: string): string {
    return join(this.dir, digest.slice('sha256:'.length));
  }

  /** A fresh temporary path for a blob being written (see adopt). */
  tempPathFor(digest: string, suffix = randomBytes(6).toString('hex')): string {
    return join(this.tempDir, `${digest.slice('sha256:'.length)}-${suffix}`);
  }

  /** Writes a blob the caller has verified; a blob already present is left as it is. */
  async write(digest: string, data: Buffer): Promise<void> {
    const path = this.pathOf(digest);
    if (existsSync(path)) return;
    const temp = this.tempPathFor(digest);
    await fsp.writeFile(temp, data, { mode: 0o644 });
    await fsp.rename(temp, path);
  }

  /**
   * Copies a file into the store as the blob `digest`, verifying digest and size as it is read (the file
   * is an archive's, so hostile: not followed if a link, refused if not a regular file). A blob present is kept.
   */
  async copyVerified(source: string, digest: string, size: number): Promise<void> {
    if (existsSync(this.pathOf(digest))) return;
    const temp = this.tempPathFor(digest);
    const input = await fsp.open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!(await input.stat()).isFile()) throw invalidArgument(`blob ${digest}: not a regular file`);
      const hash = createHash('sha256');
      let bytes = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          if (bytes > size) return callback(invalidArgument(`blob ${digest}: larger than the ${size} bytes its descriptor declares`));
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      await pipeline(input.createReadStream({ autoClose: false }), meter, createWriteStream(temp, { mode: 0o644 }));
      const actual = `sha256:${hash.digest('hex')}`;
      if (bytes !== size || actual !== digest) throw invalidArgument(`blob ${digest}: its content is ${bytes} bytes with digest ${actual}`);
      await fsp.rename(temp, this.pathOf(digest));
    } catch (err) {
      await fsp.rm(temp, { force: true });
      throw err;
    } finally {
      await input.close();
    }
  }

  /** Moves a verified blob from its temporary path into place. */
  async adopt(tempPath: string, digest: string): Promise<void> {
    await fsp.rename(tempPath, this.pathOf(digest));
  }

  /** Removes every blob whose digest is not in `needed`. */
  async sweep(needed: ReadonlySet<string>): Promise<void> {
    for (const hex of await fsp.readdir(this.dir)) {
      if (!needed.has(`sha256:${hex}`)) await fsp.rm(join(this.dir, hex), { force: true });
    }
  }

  /** Bytes and files of every blob. */
  async usage(): Promise<{ bytes: number; blobs: number }> {
    let bytes = 0;
    let blobs = 0;
    for (const hex of await fsp.readdir(this.dir)) {
      try {
        bytes += (await fsp.stat(join(this.dir, hex))).size;
        blobs++;
      } catch {
        // removed meanwhile
      }
    }
    return { bytes, blobs };
  }
}
