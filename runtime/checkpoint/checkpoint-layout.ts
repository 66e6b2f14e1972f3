// The layout of a container checkpoint archive, as checkpointctl reads it and
// CRI-O and Podman write it: an uncompressed tar holding criu's image files
// under checkpoint/, the container's runtime spec (spec.dump) and engine
// metadata (config.dump), the changes of its writable layer as a tar of their
// own (rootfs-diff.tar) with the paths it deleted as a JSON array
// (deleted.files), and criu's dump.log. Other names (stats-dump, bind.mounts,
// network.status, a container log) may be present and are not needed here.

export const ARCHIVE = {
  images: 'checkpoint',
  configDump: 'config.dump',
  specDump: 'spec.dump',
  rootfsDiff: 'rootfs-diff.tar',
  deletedFiles: 'deleted.files',
  dumpLog: 'dump.log',
} as const;

/** criu writes this first of its images: an archive without it holds no checkpoint. */
export const CRIU_INVENTORY = 'inventory.img';

/** config.dump: which container was checkpointed, from which image, when (JSON keys as checkpointctl reads them). */
export interface CheckpointedContainer {
  id: string;
  name: string;
  /** The image as the container's creator named it. */
  rootfsImage?: string;
  /** The image's id: what a restore creates the container from. */
  rootfsImageRef?: string;
  rootfsImageName?: string;
  /** The runtime handler. */
  runtime?: string;
  createdTime: string;
  checkpointedTime: string;
  restoredTime?: string;
  restored?: boolean;
}

/** Go's zero time, which config.dump holds for a restore that never happened. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Unix nanoseconds (a decimal string) as RFC 3339 with nanoseconds, as Go writes time.Time. */
export function rfc3339Nanos(unixNanos: string): string {
  const nanos = BigInt(unixNanos || '0');
  if (nanos <= 0n) return ZERO_TIME;
  const seconds = nanos / 1_000_000_000n;
  const fraction = (nanos % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  const base = new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  return `${base}${fraction ? `.${fraction}` : ''}Z`;
}
