// ImageFsInfo's figures: what images take (unpacked layers, from the sizes
// measured when each was unpacked, plus the content blobs) and what containers'
// writable layers take (a bounded walk of containers/).
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { ContentBlobs } from './content-blobs';
import type { ImageRows } from './image-rows';

export interface FilesystemUsageInfo {
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

export interface ImageFsUsage {
  images: FilesystemUsageInfo;
  containers: FilesystemUsageInfo;
}

/** Bytes and inodes of the content blobs and unpacked layers, and of the containers' directories, both on berth's root. */
export async function measureImageFs(root: string, rows: ImageRows, blobs: ContentBlobs): Promise<ImageFsUsage> {
  const layers = rows.layerTotals();
  const content = await blobs.usage();
  // Each layer has its own dir and diff dir besides its entries.
  const images = { mountpoint: root, usedBytes: layers.unpackedBytes + content.bytes, inodesUsed: layers.entries + layers.layers * 2 + content.blobs };
  const containers = await directoryUsage(join(root, 'containers'));
  return { images, containers: { ...containers, mountpoint: root } };
}

/** Bytes and inodes under a directory (container upper dirs), bounded in entries visited. */
export async function directoryUsage(dir: string, maxEntries = 1_000_000): Promise<FilesystemUsageInfo> {
  let usedBytes = 0;
  let inodesUsed = 0;
  const stack = [dir];
  const seen = new Set<number>();
  while (stack.length > 0 && inodesUsed < maxEntries) {
    const current = stack.pop()!;
    let entries;
    try {
      entries = await fsp.readdir(current, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      try {
        const st = await fsp.lstat(path);
        if (seen.has(st.ino) && st.nlink > 1) continue;
        if (st.nlink > 1) seen.add(st.ino);
        inodesUsed++;
        usedBytes += st.blocks * 512;
        if (entry.isDirectory()) stack.push(path);
      } catch {
        // gone meanwhile
      }
    }
  }
  return { mountpoint: dir, usedBytes, inodesUsed };
}
