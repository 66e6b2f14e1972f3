// The worker-thread side of a layer download (layer-workers.ts is the main
// side). The main thread only receives the HTTP body and forwards its bytes
// here; this thread verifies the blob's size and digest, keeps its copy,
// decompresses, meters and hashes the tar and unpacks it with blocking file
// system calls. Several layers unpack at once, interleaved on each worker and
// spread over workers, and berthd's event loop stays free for the CRI.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Duplex, PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { BerthError, describeError, failedPrecondition, resourceExhausted } from '../errors';
import type { LayerCompression } from './image-manifest';
import { layerCharger } from './image-budget';
import { unpackLayer } from './layer-unpacker';
import type { FromLayerWorker, LayerJobResult, LayerJobSpec, SerializedError, ToLayerWorker } from './layer-workers';

// zlib's default 16 KiB output chunk costs a thread-pool round trip and a stream
// hop per 16 KiB; 1 MiB pieces cut that 64-fold and become single write(2) calls.
const INFLATE_CHUNK = 1024 * 1024;

function zstdDecompressor(): Duplex {
  const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr: Buffer[] = [];
  child.stderr.on('data', (b: Buffer) => stderr.length < 16 && stderr.push(b));
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.on('error', (err) => duplex.destroy(err));
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal === null) duplex.destroy(failedPrecondition(`zstd: the layer does not decompress: ${Buffer.concat(stderr).toString('utf8').trim()}`));
  });
  duplex.on('close', () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill('SIGKILL');
  });
  return duplex;
}

function decompressorFor(compression: LayerCompression): Duplex {
  if (compression === 'gzip') return createGunzip({ chunkSize: INFLATE_CHUNK });
  if (compression === 'zstd') return zstdDecompressor();
  return new PassThrough();
}

/** Hashes the uncompressed tar for its diff id and enforces the decompression limits. */
function tarMeter(spec: LayerJobSpec): Transform & { diffId(): string; bytes(): number } {
  const { descriptor, limits } = spec;
  const hash = createHash('sha256');
  let bytes = 0;
  let digest = '';
  const ratioLimit = descriptor.size * limits.maxCompressionRatio;
  const transform = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      bytes += chunk.length;
      if (bytes > limits.maxUnpackedBytes) {
        callback(resourceExhausted(`layer ${descriptor.digest} unpacks to more than ${limits.maxUnpackedBytes} bytes (image.max_layer_unpacked_bytes)`));
        return;
      }
      if (bytes > ratioLimit) {
        callback(resourceExhausted(`layer ${descriptor.digest} unpacks to more than ${limits.maxCompressionRatio} times its ${descriptor.size} compressed bytes (image.max_compression_ratio): refused as a decompression bomb`));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      digest = `sha256:${hash.digest('hex')}`;
      callback();
    },
  });
  return Object.assign(transform, { diffId: () => digest, bytes: () => bytes });
}

function isTruncation(err: unknown): boolean {
  return err instanceof Error && /truncated/.test(err.message);
}

/**
 * One layer: compressed bytes arrive by message (`add`, `end`), are verified and
 * copied to the blob file at once, then written into the decompressor whose
 * output the unpacker reads. Each message's buffer goes back to the main
 * thread (`release`) once the decompressor is done with it, for reuse: that
 * is also the credit that lets the next bytes come.
 */
class LayerJob {
  private readonly hash = createHash('sha256');
  private readonly blobFd: number;
  private compressedBytes = 0;
  private finished = false;
  private readonly decompressor: Duplex;
  private readonly meter: ReturnType<typeof tarMeter>;
  // A PassThrough hands the written chunk itself downstream, so its input must be a copy; zlib and zstd's pipe are
  // done with a chunk when its write completes.
  private readonly copyInput: boolean;

  constructor(
    private readonly spec: LayerJobSpec,
    private readonly release: (bytes: number, buffer: ArrayBuffer) => void,
  ) {
    this.blobFd = fs.openSync(spec.tempBlob, 'w', 0o644);
    try {
      this.decompressor = decompressorFor(spec.compression);
    } catch (err) {
      fs.closeSync(this.blobFd);
      throw err;
    }
    this.meter = tarMeter(spec);
    this.copyInput = spec.compression === 'none';
  }

  private stopped(): boolean {
    return this.finished || this.decompressor.destroyed;
  }

  /** Fails the job (the unpacker sees the error) instead of letting it escape a message handler and kill the worker. */
  private guarded(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.decompressor.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  add(chunk: Buffer): void {
    this.guarded(() => this.addChunk(chunk));
  }

  end(): void {
    this.guarded(() => this.endInput());
  }

  private addChunk(chunk: Buffer): void {
    if (this.stopped()) return;
    const { descriptor } = this.spec;
    this.compressedBytes += chunk.length;
    if (this.compressedBytes > descriptor.size) {
      this.decompressor.destroy(failedPrecondition(`layer ${descriptor.digest}: the registry sent more than the ${descriptor.size} bytes the manifest declares`));
      return;
    }
    this.hash.update(chunk);
    let at = 0;
    while (at < chunk.length) at += fs.writeSync(this.blobFd, chunk, at, chunk.length - at);
    this.decompressor.write(this.copyInput ? Buffer.from(chunk) : chunk, (err) => {
      if (!err) this.release(chunk.length, chunk.buffer as ArrayBuffer);
    });
  }

  private endInput(): void {
    if (this.stopped()) return;
    const { descriptor } = this.spec;
    const digest = `sha256:${this.hash.digest('hex')}`;
    if (this.compressedBytes !== descriptor.size) {
      this.decompressor.destroy(failedPrecondition(`layer ${descriptor.digest}: got ${this.compressedBytes} bytes, the manifest declares ${descriptor.size}`));
    } else if (digest !== descriptor.digest) {
      this.decompressor.destroy(failedPrecondition(`layer ${descriptor.digest}: the registry's content has digest ${digest}`));
    } else {
      this.decompressor.end();
    }
  }

  abort(reason: string): void {
    if (!this.stopped()) this.decompressor.destroy(new Error(reason));
  }

  async run(): Promise<LayerJobResult> {
    const { decompressor, meter } = this;
    const flowing = pipeline(decompressor, meter);
    flowing.catch(() => undefined);
    const budget = this.spec.imageBudget ? layerCharger(this.spec.imageBudget) : undefined;
    try {
      const stats = await unpackLayer(meter, this.spec.tempDir, { budget });
      await flowing;
      return { ...stats, compressedBytes: this.compressedBytes, tarBytes: meter.bytes(), diffId: meter.diffId() };
    } catch (err) {
      // This layer's files are removed with its temporary directory: they no longer count against the image.
      budget?.refund();
      decompressor.destroy();
      meter.destroy();
      const pipelineError = await flowing.then(
        () => undefined,
        (e: unknown) => e,
      );
      // A pipeline error (digest, size, limit) explains an unpack failure better than "truncated", but
      // not better than the unpacker's own verdict (a bad entry, the image's caps).
      const unpackerVerdict = err instanceof BerthError && (err.kind === 'InvalidArgument' || err.kind === 'ResourceExhausted') && !isTruncation(err);
      throw pipelineError && !unpackerVerdict ? pipelineError : err;
    } finally {
      this.finished = true;
      fs.closeSync(this.blobFd);
    }
  }
}

function serialize(err: unknown): SerializedError {
  if (err instanceof BerthError) return { kind: err.kind, message: err.message };
  return { message: describeError(err), code: (err as NodeJS.ErrnoException | undefined)?.code };
}

if (parentPort) {
  const port = parentPort;
  const jobs = new Map<number, LayerJob>();
  port.on('message', (message: ToLayerWorker) => {
    switch (message.type) {
      case 'start': {
        const { job: id } = message;
        let job: LayerJob;
        try {
          job = new LayerJob(message.spec, (bytes, buffer) => port.postMessage({ type: 'ack', job: id, bytes, buffer } satisfies FromLayerWorker, [buffer]));
        } catch (err) {
          port.postMessage({ type: 'failed', job: id, error: serialize(err) } satisfies FromLayerWorker);
          break;
        }
        jobs.set(id, job);
        job.run().then(
          (result) => {
            jobs.delete(id);
            port.postMessage({ type: 'done', job: id, result } satisfies FromLayerWorker);
          },
          (err: unknown) => {
            jobs.delete(id);
            port.postMessage({ type: 'failed', job: id, error: serialize(err) } satisfies FromLayerWorker);
          },
        );
        break;
      }
      case 'chunk':
        jobs.get(message.job)?.add(Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength));
        break;
      case 'end':
        jobs.get(message.job)?.end();
        break;
      case 'abort':
        jobs.get(message.job)?.abort(message.reason);
        break;
    }
  });
}
