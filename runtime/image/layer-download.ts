// One layer from the registry to an unpacked directory in a single pass: the
// body is digest- and size-verified as it arrives (and kept in the content
// store), decompressed, checked against the unpacked-size and ratio limits,
// hashed for its diff id and unpacked, all streaming. On any failure the
// temporary directory and blob are removed: nothing is left behind.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { Duplex, PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { failedPrecondition, resourceExhausted } from '../errors';
import { layerCompression, type Descriptor, type LayerCompression } from './image-manifest';
import { unpackLayer, type UnpackStats } from './layer-unpacker';

export interface LayerLimits {
  maxUnpackedBytes: number;
  maxCompressionRatio: number;
}

export interface DownloadedLayer extends UnpackStats {
  /** Directory holding the unpacked layer ("<tmp>/diff"), ready to be renamed into place. */
  tempDir: string;
  /** The compressed blob, ready to be renamed into the content store. */
  tempBlob: string;
  compressedBytes: number;
  tarBytes: number;
}

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

export function decompressorFor(compression: LayerCompression): Duplex {
  if (compression === 'gzip') return createGunzip();
  if (compression === 'zstd') return zstdDecompressor();
  return new PassThrough();
}

/** Verifies a blob's digest and size as it flows, writing a copy to `copy`. */
function blobVerifier(descriptor: Descriptor, copy: WriteStream, onBytes: (n: number) => void): Transform & { bytes(): number } {
  const hash = createHash('sha256');
  let bytes = 0;
  const transform = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      bytes += chunk.length;
      if (bytes > descriptor.size) {
        callback(failedPrecondition(`layer ${descriptor.digest}: the registry sent more than the ${descriptor.size} bytes the manifest declares`));
        return;
      }
      hash.update(chunk);
      onBytes(chunk.length);
      if (copy.write(chunk)) callback(null, chunk);
      else copy.once('drain', () => callback(null, chunk));
    },
    flush(callback) {
      const digest = `sha256:${hash.digest('hex')}`;
      if (bytes !== descriptor.size) callback(failedPrecondition(`layer ${descriptor.digest}: got ${bytes} bytes, the manifest declares ${descriptor.size}`));
      else if (digest !== descriptor.digest) callback(failedPrecondition(`layer ${descriptor.digest}: the registry's content has digest ${digest}`));
      else callback();
    },
  });
  return Object.assign(transform, { bytes: () => bytes });
}

/** Hashes the uncompressed tar for its diff id and enforces the decompression limits. */
function tarMeter(descriptor: Descriptor, limits: LayerLimits): Transform & { diffId(): string; bytes(): number } {
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

export async function removeQuietly(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Streams `body` (the compressed blob) into a fresh directory under `layersDir`.
 * Throws (after cleaning up) on a digest, size, diff id, limit or path-safety failure.
 */
export async function downloadLayer(options: {
  body: Readable;
  descriptor: Descriptor;
  expectedDiffId: string;
  layersDir: string;
  contentTempDir: string;
  limits: LayerLimits;
  onBytes: (n: number) => void;
}): Promise<DownloadedLayer> {
  const { body, descriptor, limits } = options;
  const compression = layerCompression(descriptor.mediaType);
  const suffix = randomBytes(6).toString('hex');
  const tempRoot = join(options.layersDir, `tmp-${suffix}`);
  const tempDir = join(tempRoot, 'diff');
  const tempBlob = join(options.contentTempDir, `${descriptor.digest.slice(7)}-${suffix}`);
  await fsp.mkdir(tempDir, { recursive: true, mode: 0o755 });
  const copy = createWriteStream(tempBlob, { mode: 0o644 });
  const copyDone = new Promise<void>((resolve, reject) => {
    copy.once('finish', resolve);
    copy.once('error', reject);
  });
  copyDone.catch(() => undefined);
  const verifier = blobVerifier(descriptor, copy, options.onBytes);
  const decompressor = decompressorFor(compression);
  const meter = tarMeter(descriptor, limits);
  const flowing = pipeline(body, verifier, decompressor, meter);
  flowing.catch(() => undefined);
  try {
    const stats = await unpackLayer(meter, tempDir);
    await flowing;
    if (meter.diffId() !== options.expectedDiffId) {
      throw failedPrecondition(`layer ${descriptor.digest}: its content has diff id ${meter.diffId()}, the image config says ${options.expectedDiffId}`);
    }
    copy.end();
    await copyDone;
    return { ...stats, tempDir: tempRoot, tempBlob, compressedBytes: verifier.bytes(), tarBytes: meter.bytes() };
  } catch (err) {
    body.destroy();
    verifier.destroy();
    decompressor.destroy();
    meter.destroy();
    copy.destroy();
    await flowing.catch(() => undefined);
    await removeQuietly(tempRoot);
    await removeQuietly(tempBlob);
    // A pipeline error (digest, limit, broken connection) explains an unpack failure better than "truncated".
    const pipelineError = await flowing.then(() => undefined, (e: unknown) => e);
    throw pipelineError && !(err instanceof Error && 'kind' in err && (err as { kind: string }).kind === 'InvalidArgument' && !isTruncation(err))
      ? pipelineError
      : err;
  }
}

function isTruncation(err: unknown): boolean {
  return err instanceof Error && /truncated/.test(err.message);
}
