// What keeps a layer on disk, and removing what nothing keeps. An image keeps
// its layers and blobs; a container holds the layers of the image it was made
// from, so RemoveImage never pulls a running container's root filesystem out
// from under it. Collection waits while a pull runs: the pull may be about to
// record an image over layers no image lists yet.
import type { RuntimeLog } from '../common/log';
import { describeError } from '../errors';
import type { ContentBlobs } from './content-blobs';
import type { ImageRows } from './image-rows';
import type { LayerDirectories } from './layer-directories';

/** The holds as the container model sees them. */
export interface LayerHolds {
  /** Keeps an image's layers on disk while `holder` (a container id) uses them, even after the image is removed. */
  holdLayers(holder: string, imageId: string): void;
  /** Holds an image `holder` mounts as a volume: its layers, and the image itself (RemoveImage refuses it). */
  holdImageAsVolume(holder: string, imageId: string): void;
  /** Lets go of what `holder` held; layers nothing needs any more are removed. */
  releaseLayers(holder: string): Promise<void>;
}

export class LayerGc implements LayerHolds {
  private activePulls = 0;
  private pending = false;

  constructor(
    private readonly rows: ImageRows,
    private readonly layers: LayerDirectories,
    private readonly blobs: ContentBlobs,
    private readonly log: RuntimeLog,
  ) {}

  holdLayers(holder: string, imageId: string): void {
    this.rows.hold(holder, imageId);
  }

  holdImageAsVolume(holder: string, imageId: string): void {
    this.rows.useAsVolume(holder, imageId);
  }

  async releaseLayers(holder: string): Promise<void> {
    this.rows.release(holder);
    await this.collect();
  }

  /**
   * Runs a pull; collection asked for meanwhile runs once the last pull is over. A failed pull asks
   * for it too: the layers it unpacked before failing belong to no image.
   */
  async whilePulling<T>(pull: () => Promise<T>): Promise<T> {
    this.activePulls++;
    try {
      return await pull();
    } catch (err) {
      this.pending = true;
      throw err;
    } finally {
      this.activePulls--;
      if (this.activePulls === 0 && this.pending) {
        this.pending = false;
        await this.collect().catch((err: unknown) => this.log.warn({ err: describeError(err) }, 'image garbage collection failed'));
      }
    }
  }

  /** Removes layers and blobs no image and no holder needs; deferred while pulls run. */
  async collect(): Promise<void> {
    if (this.activePulls > 0) {
      this.pending = true;
      return;
    }
    const unused = this.rows.unusedLayers();
    for (const layer of unused) {
      this.rows.deleteLayer(layer.diffId);
      await this.layers.remove(layer.dirId);
    }
    await this.blobs.sweep(this.rows.neededBlobs());
    if (unused.length > 0) this.log.info({ layers: unused.map((l) => l.dirId) }, 'removed unused layers');
  }
}
