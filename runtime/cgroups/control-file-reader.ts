// Reading kernel control files (cgroup files, /proc/<pid>/net/dev) for the
// stats calls, which read over a thousand of them at 110 pods. Files asked
// for in one turn of the event loop are read together by the addon on a pool
// thread (readSmallFiles): one trip and one settlement per batch instead of
// an open, a read and a close per file through fs/promises. Without the addon
// each file goes through a file handle.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { loadNative, type BerthNative } from '../../native';

/** Reads one control file's text; undefined when it is absent or unreadable. */
export type ControlFileReader = (file: string) => Promise<string | undefined>;

/** Control files are a few KiB; a larger one is cut here rather than read on and on. */
export const MAX_CONTROL_FILE_BYTES = 256 * 1024;
const CONTROL_FILE_CHUNK_BYTES = 64 * 1024;

/** One file through a file handle (O_NONBLOCK), where the addon is not built. */
export const readControlFileThroughHandle: ControlFileReader = async (file) => {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buffer = Buffer.allocUnsafe(CONTROL_FILE_CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      chunks.push(buffer.subarray(0, bytesRead));
      total += bytesRead;
      // Kernel control files hand over everything that fits in one read: a short read is
      // the end, which saves the round trip through the thread pool a read of 0 bytes costs.
      if (bytesRead < buffer.length || total >= MAX_CONTROL_FILE_BYTES) break;
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch {
    return undefined;
  } finally {
    await handle?.close().catch(() => undefined);
  }
};

type BatchReader = Pick<BerthNative, 'readSmallFiles'>;

/**
 * Collects the files asked for until the event loop turns, then hands them to
 * the addon in batches of at most `maxBatch`, at most `maxInFlight` batches at
 * once (the pool's other threads stay free for everything else).
 */
export class ControlFileBatcher {
  private pending: { file: string; resolve: (text: string | undefined) => void }[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly native: BatchReader,
    private readonly maxBatch = 256,
    private readonly maxInFlight = 2,
  ) {}

  readonly read: ControlFileReader = (file) =>
    new Promise((resolve) => {
      this.pending.push({ file, resolve });
      this.schedule();
    });

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.inFlight < this.maxInFlight && this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      this.inFlight++;
      let texts: Promise<(string | null)[]>;
      try {
        // At a lower priority: on a busy node an ExecSync probe's helper and the event loop go first.
        texts = this.native.readSmallFiles(batch.map((b) => b.file), MAX_CONTROL_FILE_BYTES, true);
      } catch (err) {
        texts = Promise.reject(err);
      }
      texts
        .then(
          (read) => batch.forEach((b, i) => b.resolve(read[i] ?? undefined)),
          () => batch.forEach((b) => b.resolve(undefined)),
        )
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}

let shared: ControlFileReader | undefined;

/** The daemon's control-file reader: batched through the addon when it is built. */
export const readControlFile: ControlFileReader = (file) => {
  if (!shared) {
    try {
      const native = loadNative();
      shared = typeof native.readSmallFiles === 'function' ? new ControlFileBatcher(native).read : readControlFileThroughHandle;
    } catch {
      shared = readControlFileThroughHandle;
    }
  }
  return shared(file);
};
