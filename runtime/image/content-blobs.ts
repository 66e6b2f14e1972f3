// Blobs by digest (manifests, configs, compressed layers) under
// <root>/content/sha256/<hex>: what containerd calls its content store. Files
// come into being under content/tmp and are renamed into place whole, so a
// blob under sha256/ is always complete.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, promises as fsp, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export class ContentBlobs {
  readonly dir: string;
  readonly tempDir: string;

  constructor(root: string) {
    this.dir = join(root, 'content', 'sha256');
    this.tempDir = join(root, 'content', 'tmp');
  }

  /** Creates the directories and removes what an interrupted write left. */
  init(): void {
    for (const dir of [this.dir, this.tempDir]) mkdirSync(dir, { recursive: true, mode: 0o711 });
    for (const name of readdirSync(this.tempDir)) rmSync(join(this.tempDir, name), { force: true });
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
