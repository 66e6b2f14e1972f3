// The on-disk record of each attachment: written before ADD runs (so a crash
// mid-ADD still leaves what DEL needs) and completed with ADD's result, so DEL
// and CHECK replay exactly the config, args and result ADD used, whatever the
// conf dir says by then.
import { mkdirSync, promises as fsp, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Attachment, CniResult, NetworkConfigList } from './cni-types';

export interface CachedAttachment {
  kind: 'berth-cni-attachment-v1';
  attachment: Attachment;
  config: NetworkConfigList;
  /** null until ADD finished. */
  result: CniResult | null;
}

/** A container id with no dash in it (berth's pod ids are hex). */
const HEX_ID = /^[0-9a-f]+$/;

export class ResultCache {
  private readonly dir: string;

  constructor(cacheDir: string) {
    this.dir = join(cacheDir, 'attachments');
  }

  private file(containerId: string, ifName: string): string {
    return join(this.dir, `${containerId}-${ifName}.json`);
  }

  write(entry: CachedAttachment): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const path = this.file(entry.attachment.containerId, entry.attachment.ifName);
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    renameSync(tmp, path);
  }

  read(containerId: string, ifName: string): CachedAttachment | undefined {
    try {
      const entry = JSON.parse(readFileSync(this.file(containerId, ifName), 'utf8')) as CachedAttachment;
      return entry.kind === 'berth-cni-attachment-v1' ? entry : undefined;
    } catch {
      return undefined;
    }
  }

  remove(containerId: string, ifName: string): void {
    try {
      unlinkSync(this.file(containerId, ifName));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * The attachments, read without blocking the event loop (there is one per pod), but for the containers in `skip`
   * whose file names show them: a file is named `<id>-<ifName>.json`, so a hex id (berth's pod ids) is exactly what
   * comes before the name's first dash. A restart's GC, which skips the live pods, reads none of theirs.
   */
  async listAsync(skip: ReadonlySet<string> = new Set()): Promise<CachedAttachment[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch {
      return [];
    }
    const out: CachedAttachment[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const dash = name.indexOf('-');
      if (dash > 0 && skip.has(name.slice(0, dash)) && HEX_ID.test(name.slice(0, dash))) continue;
      try {
        const entry = JSON.parse(await fsp.readFile(join(this.dir, name), 'utf8')) as CachedAttachment;
        if (entry.kind === 'berth-cni-attachment-v1') out.push(entry);
      } catch {
        // removed meanwhile, or a torn write from a crash
      }
    }
    return out;
  }
}
