// Per-image caps on what a pull (or an import) may put on disk: file bytes and
// entries summed over all of the image's layers (image.max_image_unpacked_bytes,
// image.max_image_entries). The per-layer limits (size, ratio) stop one bomb; these
// stop an image of many reasonable layers that together fill the disk or its
// inodes. Layers unpack at once on several worker threads, so the running totals
// live in a SharedArrayBuffer every layer of the image adds to atomically, and a
// layer fails the moment the image goes over, not after it is all written.
import { resourceExhausted, type BerthError } from '../errors';
import type { UnpackBudget } from './layer-unpacker';

export interface ImageLimits {
  maxUnpackedBytes: number;
  maxEntries: number;
}

/** What a layer job carries to its worker: the image's shared totals and its caps. */
export interface SharedImageBudget {
  /** BigInt64Array(2): [file bytes, entries]. */
  totals: SharedArrayBuffer;
  limits: ImageLimits;
  /** The image as messages name it. */
  image: string;
}

const BYTES = 0;
const ENTRIES = 1;

function overBytes(budget: SharedImageBudget): BerthError {
  return resourceExhausted(`image ${budget.image}: its layers unpack to more than ${budget.limits.maxUnpackedBytes} bytes of files (image.max_image_unpacked_bytes)`);
}

function overEntries(budget: SharedImageBudget): BerthError {
  return resourceExhausted(`image ${budget.image}: its layers hold more than ${budget.limits.maxEntries} entries (image.max_image_entries)`);
}

/** The pull's side: one budget per image, started with the layers it has on disk already. */
export class ImageBudget {
  readonly shared: SharedImageBudget;
  private readonly totals: BigInt64Array;

  constructor(image: string, limits: ImageLimits) {
    this.shared = { totals: new SharedArrayBuffer(16), limits, image };
    this.totals = new BigInt64Array(this.shared.totals);
  }

  /** Counts a layer that is on disk already (its row's figures). */
  countPresent(layer: { unpackedSize: number; entries: number }): void {
    Atomics.add(this.totals, BYTES, BigInt(layer.unpackedSize));
    Atomics.add(this.totals, ENTRIES, BigInt(layer.entries));
  }

  /**
   * Throws when the image's layers, as recorded, are over a cap: the last word, for
   * layers another pull unpacked meanwhile (those count against that pull's budget).
   */
  checkRecorded(layers: readonly { unpackedSize: number; entries: number }[]): void {
    const bytes = layers.reduce((sum, l) => sum + l.unpackedSize, 0);
    const entries = layers.reduce((sum, l) => sum + l.entries, 0);
    if (bytes > this.shared.limits.maxUnpackedBytes) throw overBytes(this.shared);
    if (entries > this.shared.limits.maxEntries) throw overEntries(this.shared);
  }
}

/**
 * The worker's side, one per layer job: charges the shared totals and throws once the image
 * is over a cap. `refund` takes this layer's charges back (a failed attempt that is retried).
 */
export function layerCharger(budget: SharedImageBudget): UnpackBudget & { refund(): void } {
  const totals = new BigInt64Array(budget.totals);
  const maxBytes = BigInt(budget.limits.maxUnpackedBytes);
  const maxEntries = BigInt(budget.limits.maxEntries);
  let bytes = 0n;
  let entries = 0n;
  return {
    entry() {
      entries += 1n;
      if (Atomics.add(totals, ENTRIES, 1n) + 1n > maxEntries) throw overEntries(budget);
    },
    fileBytes(n: number) {
      const add = BigInt(n);
      bytes += add;
      if (Atomics.add(totals, BYTES, add) + add > maxBytes) throw overBytes(budget);
    },
    refund() {
      Atomics.sub(totals, BYTES, bytes);
      Atomics.sub(totals, ENTRIES, entries);
      bytes = 0n;
      entries = 0n;
    },
  };
}
