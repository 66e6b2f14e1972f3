// Worker threads that unpack layers (the worker side is layer-unpack-worker.ts).
// A layer's HTTP body is read on the main thread and its bytes are posted, in
// batches, to a worker that verifies, decompresses and unpacks them; credits
// (acks) bound what is in flight so a slow disk slows the download instead of
// filling memory. Workers are kept between pulls, at most one per concurrent
// layer download.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { BerthError, type BerthErrorKind } from '../errors';
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

export type ToLayerWorker =
  | { type: 'start'; spec: LayerJobSpec }
  | { type: 'chunk'; data: Uint8Array }
  | { type: 'end' }
  | { type: 'abort'; reason: string };

export type FromLayerWorker = { type: 'ack'; bytes: number; buffer: ArrayBuffer } | { type: 'done'; result: LayerJobResult } | { type: 'failed'; error: SerializedError };

// Small batches cost a message each; big ones delay the worker. 256 KiB is a few network reads.
const BATCH_BYTES = 256 * 1024;
// Batch buffers travel to a worker and back (transferred, never copied) and are reused: fresh
// memory for every 256 KiB cost more in page faults and GC than the copy into it.
const MAX_SPARE_BATCHES = 64;
// Idle workers (and spare batches) are let go after this long without a layer to unpack.
const IDLE_MS = 120_000;
// In flight (posted, not yet taken by the decompressor): pause the body above HIGH, resume below LOW.
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 2 * 1024 * 1024;

function deserialize(error: SerializedError): Error {
  if (error.kind) return new BerthError(error.kind, error.message);
  return Object.assign(new Error(error.message), error.code ? { code: error.code } : {});
}

export class LayerWorkerPool {
  private readonly idle: Worker[] = [];
  private readonly busy = new Set<Worker>();
  private readonly spareBatches: ArrayBuffer[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /** `keepIdle`: workers kept for the next pull (more may run at once; the extra ones end after their layer). */
  constructor(private readonly keepIdle: number) {}

  private spawn(): Worker {
    const worker = new Worker(join(__dirname, 'layer-unpack-worker.js'));
    // An idle worker must not keep berthd alive; a running job has the HTTP socket for that.
    worker.unref();
    // A worker that dies while idle is simply not reused.
    worker.once('exit', () => {
      const at = this.idle.indexOf(worker);
      if (at >= 0) this.idle.splice(at, 1);
    });
    return worker;
  }

  private take(): Worker {
    return this.idle.pop() ?? this.spawn();
  }

  /**
   * Starts workers ahead of `layers` layer downloads (up to the pool's size), so a
   * thread's start-up (~100 ms of CPU) overlaps the manifest and config requests.
   */
  warm(layers: number): void {
    if (this.closed) return;
    const wanted = Math.min(layers, this.keepIdle) - this.busy.size;
    while (this.idle.length < wanted) this.idle.push(this.spawn());
    this.armIdleTimer();
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    if (this.idle.length === 0) return;
    this.idleTimer = setTimeout(() => {
      if (this.busy.size > 0) return;
      for (const worker of this.idle.splice(0)) void worker.terminate();
      this.spareBatches.length = 0;
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  private batchBuffer(): Buffer {
    return Buffer.from(this.spareBatches.pop() ?? new ArrayBuffer(BATCH_BYTES));
  }

  private recycle(buffer: ArrayBuffer): void {
    if (buffer.byteLength === BATCH_BYTES && this.spareBatches.length < MAX_SPARE_BATCHES) this.spareBatches.push(buffer);
  }

  private giveBack(worker: Worker, healthy: boolean): void {
    this.busy.delete(worker);
    if (healthy && !this.closed && this.idle.length < this.keepIdle) this.idle.push(worker);
    else void worker.terminate();
    this.armIdleTimer();
  }

  /**
   * Streams `body` through a worker into `spec.tempDir` and `spec.tempBlob`. Resolves once the worker
   * has finished (its files closed); rejects with the body's error when the transfer broke, else the worker's.
   */
  unpack(spec: LayerJobSpec, body: Readable, onBytes: (n: number) => void): Promise<LayerJobResult> {
    if (this.closed) return Promise.reject(new BerthError('Unavailable', 'berthd is shutting down'));
    const worker = this.take();
    this.busy.add(worker);
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
        post({ type: 'chunk', data: new Uint8Array(buffer, 0, filled) }, [buffer]);
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
        post({ type: 'end' });
      };
      const onBodyError = (err: unknown): void => {
        bodyError ??= err;
        post({ type: 'abort', reason: `the layer download broke: ${err instanceof Error ? err.message : String(err)}` });
      };
      const finish = (healthy: boolean, outcome: () => void): void => {
        if (settled) return;
        settled = true;
        body.off('data', onData);
        body.off('end', onEnd);
        body.off('error', onBodyError);
        worker.off('message', onMessage);
        worker.off('error', onWorkerError);
        worker.off('exit', onExit);
        if (!body.readableEnded) {
          // Nothing more is wanted from this response; errors after this point are not ours.
          body.on('error', () => undefined);
          body.destroy();
        }
        this.giveBack(worker, healthy);
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
          finish(true, () => (bodyError ? reject(bodyError) : resolve(message.result)));
        } else {
          finish(true, () => reject(bodyError ?? deserialize(message.error)));
        }
      };
      const onWorkerError = (err: Error): void => finish(false, () => reject(bodyError ?? err));
      const onExit = (code: number): void => finish(false, () => reject(bodyError ?? new Error(`the layer worker exited (code ${code})`)));

      worker.on('message', onMessage);
      worker.on('error', onWorkerError);
      worker.on('exit', onExit);
      worker.postMessage({ type: 'start', spec } satisfies ToLayerWorker);
      body.on('data', onData);
      body.on('end', onEnd);
      body.on('error', onBodyError);
    });
  }

  /** Ends every worker; running jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const all = [...this.idle, ...this.busy];
    this.idle.length = 0;
    await Promise.all(all.map((w) => w.terminate()));
  }
}
