// The images the benchmarks use, built with the test support's image builder
// from busybox-static and a tiny pause program compiled here, so both
// runtimes pull byte-identical images from the same local registry.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBusyboxImage, buildImage, buildLayer, busyboxRootfsEntries, type BuiltImage, type BuiltLayer } from '../../test/support/oci-image-builder';
import type { TarEntry } from '../../test/support/tar-writer';

// A pause process like the one kubelets expect behind a sandbox: sleeps
// forever, reaps adopted children, exits 0 on SIGINT/SIGTERM.
const PAUSE_SOURCE = `
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction q = { .sa_handler = quit }, r = { .sa_handler = reap, .sa_flags = SA_NOCLDSTOP };
  sigaction(SIGINT, &q, NULL);
  sigaction(SIGTERM, &q, NULL);
  sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
`;

function compilePause(): Buffer {
  const dir = mkdtempSync('/tmp/berth-bench-pause-');
  try {
    writeFileSync(join(dir, 'pause.c'), PAUSE_SOURCE);
    execFileSync('gcc', ['-static', '-Os', '-s', '-o', join(dir, 'pause'), join(dir, 'pause.c')], { stdio: 'pipe' });
    return readFileSync(join(dir, 'pause'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function pauseImage(): BuiltImage {
  const layer = buildLayer([{ path: 'pause', type: 'file', mode: 0o755, content: compilePause() }]);
  return buildImage({ layers: [layer], config: { Entrypoint: ['/pause'] } });
}

export function busyboxImage(): BuiltImage {
  return buildBusyboxImage({ links: 'symlink' });
}

/**
 * `size` bytes that look random (gzip cannot shrink them) but are the same on
 * every run: the AES-128-CTR keystream under a key derived from `seed`.
 */
export function deterministicBytes(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(`berth-bench:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

export interface LargeImageShape {
  /** Sizes of the data layers in MiB (the busybox base layer comes first). */
  layerMiB: number[];
  /** Files in data layers are at most this large. */
  fileMiB: number;
  /** Small files per data layer (metadata work for the unpacker). */
  smallFilesPerLayer: number;
}

export const DEFAULT_LARGE_IMAGE: LargeImageShape = { layerMiB: [32, 24, 20, 14, 8, 6], fileMiB: 4, smallFilesPerLayer: 200 };

/** Parses BENCH_PULL_LAYERS_MIB="32,24,20" into a shape (default: DEFAULT_LARGE_IMAGE). */
export function largeImageShapeFromEnv(env: NodeJS.ProcessEnv = process.env): LargeImageShape {
  const raw = env.BENCH_PULL_LAYERS_MIB;
  if (!raw) return DEFAULT_LARGE_IMAGE;
  const layerMiB = raw.split(',').map((s) => Number(s.trim()));
  if (layerMiB.some((n) => !Number.isFinite(n) || n <= 0)) throw new Error(`BENCH_PULL_LAYERS_MIB: expected sizes in MiB like "32,24,20", got "${raw}"`);
  return { ...DEFAULT_LARGE_IMAGE, layerMiB };
}

/**
 * A busybox base plus data layers of deterministic incompressible bytes: the
 * same digests every run, and every pull moves the full size over the wire.
 */
export function largeImage(shape: LargeImageShape = DEFAULT_LARGE_IMAGE): BuiltImage {
  const layers: BuiltLayer[] = [buildLayer(busyboxRootfsEntries({ links: 'symlink' }))];
  shape.layerMiB.forEach((mib, index) => {
    const entries: TarEntry[] = [{ path: `data${index}/`, type: 'dir' }];
    let remaining = Math.round(mib * 1024 * 1024);
    for (let file = 0; remaining > 0; file++) {
      const size = Math.min(remaining, shape.fileMiB * 1024 * 1024);
      entries.push({ path: `data${index}/blob${file}.bin`, type: 'file', content: deterministicBytes(`layer${index}/file${file}`, size) });
      remaining -= size;
    }
    entries.push({ path: `data${index}/small/`, type: 'dir' });
    for (let s = 0; s < shape.smallFilesPerLayer; s++) {
      entries.push({ path: `data${index}/small/f${s}.bin`, type: 'file', content: deterministicBytes(`layer${index}/small${s}`, 512 + ((s * 977) % 7000)) });
    }
    layers.push(buildLayer(entries));
  });
  return buildImage({ layers, config: { Cmd: ['sh'] } });
}

export function imageBytes(image: BuiltImage): number {
  return image.layers.reduce((sum, l) => sum + l.size, 0) + image.config.size;
}
