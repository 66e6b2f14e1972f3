// Image pull, berth vs containerd: one multi-layer image (busybox base + data
// layers of deterministic incompressible bytes, gzip; >= 100 MiB by default)
// pushed once to the local registry, pulled by each runtime N times. Between
// pulls the image is removed and the runtime's content and unpacked layers
// are waited for until gone, so every timed pull is cold. Target (the issue):
// berth's PullImage wall time p50 <= 0.8x containerd's.
import type { PushedImage } from '../test/support/oci-image-builder';
import { pushImage } from '../test/support/oci-image-builder';
import type { BenchRuntime } from './support/bench-env';
import { intFromEnv, processCpuMs, runMain, runScenario } from './support/bench-env';
import { imageBytes, largeImage, largeImageShapeFromEnv } from './support/bench-images';
import { SampleBook } from './support/samples';

const iterations = intFromEnv('BENCH_PULL_ITERATIONS', 5, 1);
const warmup = intFromEnv('BENCH_PULL_WARMUP', 1, 0);
const gcWaitMs = intFromEnv('BENCH_GC_WAIT_MS', 60_000, 0);
const shape = largeImageShapeFromEnv();

/** Waits until none of `digests` is in the runtime's content store and its unpacked layers are back to `baseline`. */
async function waitUntilGone(rt: BenchRuntime, digests: string[], baseline: number): Promise<string | undefined> {
  const deadline = Date.now() + gcWaitMs;
  for (;;) {
    const left = digests.filter((d) => !rt.blobGone(d));
    const layers = rt.unpackedLayerCount();
    if (left.length === 0 && layers <= baseline) return undefined;
    if (Date.now() > deadline) {
      return `${rt.name}: ${gcWaitMs} ms after RemoveImage, ${left.length} of ${digests.length} blobs and ${layers - baseline} unpacked layers were still on disk (the next pull may not be cold)`;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

runMain(async () => {
  const book = new SampleBook();
  const scratch = new SampleBook();
  let image: PushedImage | undefined;
  const built = largeImage(shape);
  const totalMiB = imageBytes(built) / (1024 * 1024);
  await runScenario(
    {
      scenario: 'image-pull',
      parameters: {
        iterations,
        warmup,
        layers: built.layers.length,
        compressedMiB: Math.round(totalMiB * 10) / 10,
        dataLayerMiB: shape.layerMiB.join(','),
      },
      targets: [{ operation: 'PullImage', maxRatio: 0.8 }],
      prepare: async (registry) => {
        image = await pushImage(registry, 'bench/large:1', built);
      },
      run: async (env, _book) => {
        const pushed = image!;
        const digests = [...built.layers.map((l) => l.digest), built.config.digest];
        const baselines = new Map(env.runtimes.map((rt) => [rt, rt.unpackedLayerCount()]));
        const reported = new Set<string>();
        for (let i = 0; i < warmup + iterations; i++) {
          const into = i < warmup ? scratch : book;
          for (const rt of env.order(i)) {
            const stale = digests.filter((d) => !rt.blobGone(d)).length;
            if (stale > 0) env.notes.push(`${rt.name}: pull ${i} started with ${stale} blobs of the image still stored`);
            try {
              const cpuBefore = processCpuMs(rt.daemonPid);
              const { image_ref: ref } = await into.time('PullImage', rt.name, () =>
                rt.client.call('PullImage', { image: { image: pushed.reference } }, { timeoutMs: 600_000 }),
              );
              // Daemon CPU per pull is less sensitive to other load on the machine than wall time.
              into.record('PullImage daemon CPU', rt.name, processCpuMs(rt.daemonPid) - cpuBefore);
              const status = await rt.client.call('ImageStatus', { image: { image: pushed.reference }, verbose: false });
              if (!status.image) throw new Error(`${rt.name}: ImageStatus of ${pushed.reference} found nothing after a pull (ref ${ref})`);
              if (status.image.id !== pushed.imageId) env.notes.push(`${rt.name}: image id ${status.image.id} differs from the config digest ${pushed.imageId}`);
            } finally {
              await into.time('RemoveImage', rt.name, () => rt.client.call('RemoveImage', { image: { image: pushed.reference } }));
            }
            const problem = await waitUntilGone(rt, digests, baselines.get(rt)!);
            if (problem && !reported.has(rt.name)) {
              reported.add(rt.name);
              env.notes.push(problem);
            }
          }
        }
        const ratePerRuntime = env.runtimes.map((rt) => {
          const samples = book.raw('PullImage', rt.name);
          const sorted = [...samples].sort((a, b) => a - b);
          const p50 = sorted[Math.floor(sorted.length / 2)];
          return `${rt.name} ${(totalMiB / (p50 / 1000)).toFixed(1)} MiB/s at p50`;
        });
        env.notes.push(`image: ${built.layers.length} layers, ${totalMiB.toFixed(1)} MiB compressed; ${ratePerRuntime.join(', ')}`);
      },
    },
    book,
  );
});
