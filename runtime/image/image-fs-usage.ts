// ImageFsInfo's figures, never measured on the request path: what images
// take (unpacked layers, from the sizes recorded when each was unpacked, plus
// the content blobs), counted in the background at most once per refresh
// period or soon after a pull or removal; and what containers' writable
// layers take, from the stats collector's background meter (which never
// enters a mount point, so no container's mounted rootfs is walked). Each
// figure carries the time it was measured, as the CRI asks.
import { nowUnixNanos } from '../common/clock';
import type { ContentBlobs } from './content-blobs';
import type { ImageRows } from './image-rows';

export interface FilesystemUsageInfo {
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
  /** Unix nanoseconds of the measurement (for a sum: of its oldest part). */
  timestampNs: string;
}

export interface ImageFsUsage {
  images: FilesystemUsageInfo;
  containers: FilesystemUsageInfo;
}

/** Containers' writable layers as measured off the request path. */
export interface WritableLayerTotals {
  total(): { usedBytes: number; inodesUsed: number; oldestTimestampNs: bigint | undefined };
}

export interface ImageFsAccountingOptions {
  root: string;
  rows: ImageRows;
  blobs: ContentBlobs;
  /** The image figure is counted again once it is this old (default 10 s). */
  refreshMs?: number;
}

export class ImageFsAccounting {
  private latest?: { usage: FilesystemUsageInfo; atMs: number };
  private counting?: Promise<FilesystemUsageInfo>;
  private stale = true;
  private writableLayers?: WritableLayerTotals;
  private readonly refreshMs: number;

  constructor(private readonly options: ImageFsAccountingOptions) {
    this.refreshMs = options.refreshMs ?? 10_000;
  }

  /** Where the containers' figure comes from (the stats collector, built beside the images). */
  setWritableLayers(source: WritableLayerTotals): void {
    this.writableLayers = source;
  }

  /** Images changed (pulled, removed, layers collected): count again soon, in the background. */
  invalidate(): void {
    this.stale = true;
    void this.count().catch(() => undefined);
  }

  /**
   * The latest figures. Only a call before any count finished waits for one
   * (blob sizes and the layer sizes recorded at unpack: no walk); otherwise
   * the latest figure is answered at once, with its time, and an old one is
   * counted again in the background. On a busy node a count may wait behind
   * other file work; the kubelet's call must not.
   */
  async usage(): Promise<ImageFsUsage> {
    let images: FilesystemUsageInfo;
    if (!this.latest) images = await this.count();
    else {
      images = this.latest.usage;
      if (this.stale || Date.now() - this.latest.atMs >= this.refreshMs) void this.count().catch(() => undefined);
    }
    return { images, containers: this.containers() };
  }

  private containers(): FilesystemUsageInfo {
    const total = this.writableLayers?.total();
    return {
      mountpoint: this.options.root,
      usedBytes: total?.usedBytes ?? 0,
      inodesUsed: total?.inodesUsed ?? 0,
      timestampNs: total?.oldestTimestampNs !== undefined ? String(total.oldestTimestampNs) : nowUnixNanos(),
    };
  }

  private count(): Promise<FilesystemUsageInfo> {
    this.counting ??= (async () => {
      try {
        this.stale = false;
        const timestampNs = nowUnixNanos();
        const layers = this.options.rows.layerTotals();
        const content = await this.options.blobs.usage();
        const usage: FilesystemUsageInfo = {
          mountpoint: this.options.root,
          usedBytes: layers.unpackedBytes + content.bytes,
          // Each layer has its own dir and diff dir besides its entries.
          inodesUsed: layers.entries + layers.layers * 2 + content.blobs,
          timestampNs,
        };
        this.latest = { usage, atMs: Date.now() };
        return usage;
      } finally {
        this.counting = undefined;
      }
    })();
    return this.counting;
  }
}
