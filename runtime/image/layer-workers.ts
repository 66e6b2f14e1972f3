// Worker threads that unpack layers (the worker side is layer-unpack-worker.ts).
// A layer's HTTP body is read on the main thread and its bytes are posted, in
// batches, to a worker that verifies, decompresses and unpacks them; credits
// (acks) bound what is in flight so a slow disk slows the download instead of
// filling memory. A worker interleaves several layers; workers (one per core
// at most) are kept between pulls, so their JIT-compiled code is too.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { loadNative } from '../../native';
import { BerthError, describeError, resourceExhausted, type BerthErrorKind } from '../errors';
import type { SharedImageBudget } from './image-budget';
import type { Descriptor, LayerCompression } from './image-manifest';
import type { UnpackStats } from './layer-unpacker';

export interface LayerLimits {
  maxUnpackedBytes: number;
  maxCompressionRatio: number;
}

export interface LayerJobSpec {
  descriptor: Descriptor;
  compression: LayerCompression;
  limits: LayerLimits;
  /** The image's caps over all of its layers, shared by the layers unpacking at once. */
  imageBudget?: SharedImageBudget;
  /** An existing, empty directory the tar is unpacked into. */
  tempDir: string;
  /** Where the compressed blob is copied as it arrives. */
  tempBlob: string;
}

export interface LayerJobResult extends UnpackStats {
  compressedBytes: number;
  tarBytes: number;
  diffId: string;
}

export interface SerializedError {
  kind?: BerthErrorKind;
  message: string;
  code?: string;
}

/** Messages name their job: a worker interleaves several layers. */
export type ToLayerWorker =
  | { type: 'start'; job: number; spec: LayerJobSpec }
  | { type: 'chunk'; job: number; data: Uint8Array }
  | { type: 'end'; job: number }
  | { type: 'abort'; job: number; reason: string };

export type FromLayerWorker =
  | { type: 'ack'; job: number; bytes: number; buffer: ArrayBuffer }
  | { type: 'done'; job: number; result: LayerJobResult }
  | { type: 'failed'; job: number; error: SerializedError };

// Small batches cost a message each; big ones delay the worker. 256 KiB is a few network reads.
const BATCH_BYTES = 256 * 1024;
// Batch buffers travel to a worker and back (transferred, never copied) and are reused: fresh
// memory for every 256 KiB cost more in page faults and GC than the copy into it.
const MAX_SPARE_BATCHES = 80;
/**
 * A worker's own V8 heap, so that a layer that makes the unpacker's path sets grow (millions of
 * entries) ends that worker with ERR_WORKER_OUT_OF_MEMORY instead of taking berthd's heap, and
 * berthd, down. Batches and file data are ArrayBuffers outside these limits; a pull of ordinary
 * images peaks far below them (see SECURITY.md).
 */
export const LAYER_WORKER_RESOURCE_LIMITS = { maxOldGenerationSizeMb: 1024, maxYoungGenerationSizeMb: 64, stackSizeMb: 4 } as const;
// Idle workers (and spare batches) are let go after this long without a layer to unpack: a
// kubelet pulls in bursts, and each idle worker is a V8 isolate of ~10 MiB.
const IDLE_MS = 15_000;
// In flight (posted, not yet taken by the decompressor): pause the body above HIGH, resume below LOW.
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

/** The addon's malloc_trim, where the addon is built. */
function nativeReleaseFreeMemory(): (() => Promise<boolean>) | undefined {
  try {
    const native = loadNative();
    return typeof native.releaseFreeMemory === 'function' ? () => native.releaseFreeMemory() : undefined;
  } catch {
    return undefined;
  }
}

function deserialize(error: SerializedError): Error {
  if (error.kind) return new BerthError(error.kind, error.message);
  return Object.assign(new Error(error.message), error.code ? { code: error.code } : {});
}

/** What the pool routes from a worker to one of its jobs. */
interface JobHandlers {
  message(message: FromLayerWorker): void;
  /** The worker died or failed: the job is over. */
  lost(err: Error): void;
}

interface PooledWorker {
  worker: Worker;
  jobs: Map<number, JobHandlers>;
}

export class LayerWorkerPool {
  private readonly workers: PooledWorker[] = [];
  private readonly spareBatches: ArrayBuffer[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private nextJob = 1;
  private closed = false;

  /**
   * `maxWorkers` threads at most (one per core is plenty: each interleaves several layers, and
   * every extra thread is another V8 isolate to start and to warm up its JIT).
   */
  private readonly idleMs: number;
  private readonly releaseFreeMemory: (() => Promise<unknown>) | undefined;

  constructor(
    private readonly maxWorkers: number,
    options: { idleMs?: number; releaseFreeMemory?: () => Promise<unknown> } = {},
  ) {
    this.idleMs = options.idleMs ?? IDLE_MS;
    this.releaseFreeMemory = options.releaseFreeMemory ?? nativeReleaseFreeMemory();
  }

  /** Worker threads running now. */
  get size(): number {
    return this.workers.length;
  }

  private spawn(): PooledWorker {
    const worker = new Worker(join(__dirname, 'layer-unpack-worker.js'), { resourceLimits: LAYER_WORKER_RESOURCE_LIMITS });
    const pooled: PooledWorker = { worker, jobs: new Map() };
    // An idle worker must not keep berthd alive; a running job has the HTTP socket for that.
    worker.unref();
    worker.on('message', (message: FromLayerWorker) => pooled.jobs.get(message.job)?.message(message));
    const lose = (err: Error): void => {
      const at = this.workers.indexOf(pooled);
      if (at >= 0) this.workers.splice(at, 1);
      const jobs = [...pooled.jobs.values()];
      pooled.jobs.clear();
      for (const job of jobs) job.lost(err);
      void worker.terminate();
    };
    worker.on('error', (err: Error & { code?: string }) => {
      if (err.code !== 'ERR_WORKER_OUT_OF_MEMORY') return lose(err);
      const heap = LAYER_WORKER_RESOURCE_LIMITS.maxOldGenerationSizeMb;
      lose(resourceExhausted(`unpacking a layer took more than the layer worker's ${heap} MiB heap (too many entries in one layer?)`));
    });
    worker.on('exit', (code) => lose(new Error(`the layer worker exited (code ${code})`)));
    this.workers.push(pooled);
    return pooled;
  }

  /** The least busy worker, or a new one while there are fewer than maxWorkers. */
  private pick(): PooledWorker {
    let best: PooledWorker | undefined;
    for (const w of this.workers) if (!best || w.jobs.size < best.jobs.size) best = w;
    if (best && (best.jobs.size === 0 || this.workers.length >= this.maxWorkers)) return best;
    return this.spawn();
  }

  private activeJobs(): number {
    return this.workers.reduce((n, w) => n + w.jobs.size, 0);
  }

  /**
   * Starts workers ahead of `layers` layer downloads (up to the pool's size), so a
   * thread's start-up (~100 ms of CPU) overlaps the manifest and config requests.
   */
  warm(layers: number): void {
    if (this.closed) return;
    while (this.workers.length < Math.min(layers, this.maxWorkers)) this.spawn();
    this.armIdleTimer();
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    if (this.workers.length === 0 || this.activeJobs() > 0) return;
    this.idleTimer = setTimeout(() => {
      if (this.activeJobs() > 0) return;
      const retired = this.workers.splice(0).map((w) => w.worker.terminate());
      this.spareBatches.length = 0;
      void Promise.allSettled(retired).then(() => this.afterRetirement());
    }, this.idleMs);
    this.idleTimer.unref();
  }

  /**
   * An isolate's memory, freed as its thread ends, stays in that thread's malloc arena (resident,
   * ~5-10 MiB per worker) until it is handed back to the kernel: done once no worker runs.
   */
  private afterRetirement(): void {
    if (this.closed || this.workers.length > 0) return;
    void this.releaseFreeMemory?.().catch(() => undefined);
  }

  private batchBuffer(): Buffer {
    return Buffer.from(this.spareBatches.pop() ?? new ArrayBuffer(BATCH_BYTES));
  }

  private recycle(buffer: ArrayBuffer): void {
    if (buffer.byteLength === BATCH_BYTES && this.spareBatches.length < MAX_SPARE_BATCHES) this.spareBatches.push(buffer);
  }

  /**
   * Streams `body` through a worker into `spec.tempDir` and `spec.tempBlob`. Resolves once the worker
   * has finished (its files closed); rejects with the body's error when the transfer broke, else the worker's.
   */
  unpack(spec: LayerJobSpec, body: Readable, onBytes: (n: number) => void): Promise<LayerJobResult> {
    if (this.closed) return Promise.reject(new BerthError('Unavailable', 'berthd is shutting down'));
    const pooled = this.pick();
    const { worker } = pooled;
    const job = this.nextJob++;
    clearTimeout(this.idleTimer);
    return new Promise<LayerJobResult>((resolve, reject) => {
      let batch: Buffer | undefined;
      let filled = 0;
      let inFlight = 0;
      let paused = false;
      let bodyError: unknown;
      let settled = false;

      const post = (message: ToLayerWorker, transfer?: ArrayBuffer[]): void => {
        if (!settled) worker.postMessage(message, transfer);
      };
      const flush = (): void => {
        if (!batch || filled === 0) return;
        const buffer = batch.buffer as ArrayBuffer;
        inFlight += filled;
        post({ type: 'chunk', job, data: new Uint8Array(buffer, 0, filled) }, [buffer]);
        batch = undefined;
        filled = 0;
      };
      const onData = (chunk: Buffer): void => {
        onBytes(chunk.length);
        for (let at = 0; at < chunk.length; ) {
          batch ??= this.batchBuffer();
          const copied = chunk.copy(batch, filled, at);
          filled += copied;
          at += copied;
          if (filled === batch.length) flush();
        }
        if (!paused && inFlight > HIGH_WATER) {
          paused = true;
          body.pause();
        }
      };
      const onEnd = (): void => {
        flush();
        post({ type: 'end', job });
      };
      const onBodyError = (err: unknown): void => {
        bodyError ??= err;
        post({ type: 'abort', job, reason: `the layer download broke: ${describeError(err)}` });
      };
      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        body.off('data', onData);
        body.off('end', onEnd);
        body.off('error', onBodyError);
        pooled.jobs.delete(job);
        if (!body.readableEnded) {
          // Nothing more is wanted from this response; errors after this point are not ours.
          body.on('error', () => undefined);
          body.destroy();
        }
        this.armIdleTimer();
        outcome();
      };
      const onMessage = (message: FromLayerWorker): void => {
        if (message.type === 'ack') {
          this.recycle(message.buffer);
          inFlight -= message.bytes;
          if (paused && inFlight < LOW_WATER) {
            paused = false;
            body.resume();
          }
        } else if (message.type === 'done') {
          finish(() => (bodyError ? reject(bodyError) : resolve(message.result)));
        } else {
          finish(() => reject(bodyError ?? deserialize(message.error)));
        }
      };

      pooled.jobs.set(job, { message: onMessage, lost: (err) => finish(() => reject(bodyError ?? err)) });
      worker.postMessage({ type: 'start', job, spec } satisfies ToLayerWorker);
      body.on('data', onData);
      body.on('end', onEnd);
      body.on('error', onBodyError);
    });
  }

  /** Ends every worker; running jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    // Their jobs are told through the workers' exit.
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
