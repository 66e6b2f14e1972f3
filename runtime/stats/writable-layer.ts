// Bytes and inodes a container's writable layer (its overlay upper dir) holds,
// as du counts them: allocated blocks, each inode once however many links it
// has. Walking a big tree is slow, so each result is kept for a short while.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface LayerUsage {
  usedBytes: number;
  inodesUsed: number;
}

/** A walk stops counting here, so one runaway container cannot stall stats for all. */
const MAX_ENTRIES = 1_000_000;

export async function measureDirectory(root: string): Promise<LayerUsage | undefined> {
  const seen = new Set<string>();
  let usedBytes = 0;
  let entries = 0;
  const pending: string[] = [root];
  while (pending.length && entries < MAX_ENTRIES) {
    const path = pending.pop()!;
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      if (path === root) return undefined;
      continue;
    }
    entries += 1;
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      usedBytes += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      try {
        for (const name of await readdir(path)) pending.push(join(path, name));
      } catch {
        // removed while walking
      }
    }
  }
  return { usedBytes, inodesUsed: seen.size };
}

export class WritableLayerMeter {
  private readonly cache = new Map<string, { at: number; usage: LayerUsage | undefined; pending?: Promise<LayerUsage | undefined> }>();

  constructor(private readonly ttlMs = 2000) {}

  async usage(upperDir: string): Promise<LayerUsage | undefined> {
    if (!upperDir) return undefined;
    const now = Date.now();
    const hit = this.cache.get(upperDir);
    if (hit?.pending) return hit.pending;
    if (hit && now - hit.at < this.ttlMs) return hit.usage;
    const pending = measureDirectory(upperDir);
    this.cache.set(upperDir, { at: now, usage: hit?.usage, pending });
    const usage = await pending;
    this.cache.set(upperDir, { at: Date.now(), usage });
    return usage;
  }

  /** Drops entries for layers no longer in use. */
  retain(upperDirs: Iterable<string>): void {
    const keep = new Set(upperDirs);
    for (const dir of this.cache.keys()) if (!keep.has(dir)) this.cache.delete(dir);
  }
}
