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
  /** Pulls ever started: a listing taken while this stayed the same saw no pull's files. */
  private pullsStarted = 0;
  private pending = false;
  private straysPending = false;

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
    this.pullsStarted++;
    this.activePulls++;
    try {
      return await pull();
    } catch (err) {
      this.pending = true;
      throw err;
    } finally {
      this.activePulls--;
      if (this.activePulls === 0 && this.straysPending) {
        this.straysPending = false;
        this.pending = false;
        await this.collectStrays().catch((err: unknown) => this.log.warn({ err: describeError(err) }, 'collecting leftovers in the image store failed'));
      } else if (this.activePulls === 0 && this.pending) {
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
      // The row goes first: a crash before the directory does leaves a stray, collected at the next start.
      this.rows.deleteLayer(layer.diffId);
      const mounted = await this.layers.remove(layer.dirId);
      if (mounted.length > 0) this.log.warn({ layer: layer.dirId, mounted }, 'an unused layer directory has something mounted in it; left in place');
    }
    await this.blobs.sweep(this.rows.neededBlobs());
    if (unused.length > 0) this.log.info({ layers: unused.map((l) => l.dirId) }, 'removed unused layers');
  }

  /**
   * Removes what interrupted work left in the store: layers/ entries no layer row owns (a crash
   * between an unpack's rename into place and its row, or between a collection's row delete and
   * its directory removal), temporary unpack directories and blob files, then runs a collection
   * (blobs nothing needs). Started in the background at start; it lists only while no pull runs,
   * so nothing a pull is writing is taken for a leftover, and it never removes a tree that has
   * something mounted in it.
   */
  async collectStrays(): Promise<void> {
    if (this.activePulls > 0) {
      this.straysPending = true;
      return;
    }
    const listedAt = this.pullsStarted;
    const [layerNames, tempBlobs] = await Promise.all([this.layers.entries(), this.blobs.tempEntries()]);
    if (this.pullsStarted !== listedAt) {
      // A pull began while listing: its temporary files may be in the lists. Again once pulls are over.
      if (this.activePulls > 0) this.straysPending = true;
      else return this.collectStrays();
      return;
    }
    // Decided now, from the lists and rows of one moment: a pull started later never picks a listed name.
    const strays = layerNames.filter((name) => this.layers.isTemp(name) || this.rows.dirIdOwner(name) === undefined);
    const removed: string[] = [];
    for (const name of strays) {
      const mounted = await this.layers.remove(name);
      if (mounted.length > 0) this.log.warn({ dir: name, mounted }, 'a layer directory no image owns has something mounted in it; left in place');
      else removed.push(name);
    }
    for (const name of tempBlobs) await this.blobs.removeTemp(name);
    await this.collect();
    if (removed.length > 0 || tempBlobs.length > 0 || strays.length > 0) {
      this.log.info({ layerDirs: removed, keptMounted: strays.length - removed.length, tempBlobs: tempBlobs.length }, 'collected leftovers of interrupted pulls and collections');
    }
  }
}
