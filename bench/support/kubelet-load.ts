// What a kubelet keeps asking a runtime on a full node, as one bounded load:
// relist (ListPodSandbox + ListContainers) every second, stats
// (ListPodSandboxStats + ListContainerStats + ImageFsInfo, concurrently, as
// separate kubelet workers call them) every 10 s, one ExecSync probe per pod
// every 10 s spread over the period, and Version every 100 ms as the
// responsiveness probe. Each loop stops by itself when the time is up.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { BenchRuntime } from './bench-env';
import type { SampleBook } from './samples';

export interface DensityPod {
  podId: string;
  containerId: string;
}

export interface KubeletLoadOptions {
  durationMs: number;
  relistMs: number;
  statsMs: number;
  probeMs: number;
  versionMs: number;
  /** Deadline of each call: a stalled daemon shows as slow calls and errors, never as a hung benchmark. */
  callTimeoutMs: number;
  probeCommand: string[];
  /** Called every `sampleMs` during the load (e.g. scraping berthd's event-loop delay). */
  sample?: () => Promise<void>;
  sampleMs?: number;
}

export interface KubeletLoadOutcome {
  /** Failed calls by operation ("Version: DEADLINE_EXCEEDED" ...). */
  errors: Map<string, number>;
  /** How late the benchmark's own event loop ran (ms): large values mean client-side noise in the latencies. */
  clientLoopDelayP99Ms: number;
  clientLoopDelayMaxMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function describeFailure(err: unknown): string {
  const e = err as { code?: number; details?: string; message?: string };
  return e.code !== undefined ? `code ${e.code}` : (e.message ?? String(err)).slice(0, 60);
}

/** Runs the load against one runtime for `durationMs`; latencies (ms) go to `book` under the CRI method names. */
export async function driveKubeletLoad(rt: BenchRuntime, pods: readonly DensityPod[], options: KubeletLoadOptions, book: SampleBook): Promise<KubeletLoadOutcome> {
  const errors = new Map<string, number>();
  const deadline = Date.now() + options.durationMs;
  const timeoutMs = options.callTimeoutMs;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();

  /** One timed call; failures are counted (and their time still recorded: a stall is a finding). */
  const timed = async (operation: string, work: () => Promise<unknown>): Promise<void> => {
    const started = process.hrtime.bigint();
    try {
      await work();
    } catch (err) {
      const key = `${operation}: ${describeFailure(err)}`;
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
    book.record(operation, rt.name, Number(process.hrtime.bigint() - started) / 1e6);
  };

  /** Runs `tick` at a fixed rate from `firstAt` until the deadline; a tick that overruns skips the ticks it missed. */
  const periodic = async (periodMs: number, firstAt: number, tick: () => Promise<void>): Promise<void> => {
    let next = firstAt;
    await sleep(next - Date.now());
    while (Date.now() < deadline) {
      await tick();
      next += periodMs;
      while (next < Date.now()) next += periodMs;
      if (next >= deadline) break;
      await sleep(next - Date.now());
    }
  };

  const client = rt.client;
  const start = Date.now();
  const relist = periodic(options.relistMs, start, async () => {
    await timed('ListPodSandbox', () => client.call('ListPodSandbox', {}, { timeoutMs }));
    await timed('ListContainers', () => client.call('ListContainers', {}, { timeoutMs }));
  });
  // The first stats round comes after a relist or two, as on a kubelet that has been running.
  const stats = periodic(options.statsMs, start + Math.min(2000, options.statsMs / 2), async () => {
    await Promise.all([
      timed('ListPodSandboxStats', () => client.call('ListPodSandboxStats', {}, { timeoutMs })),
      timed('ListContainerStats', () => client.call('ListContainerStats', {}, { timeoutMs })),
      timed('ImageFsInfo', () => client.call('ImageFsInfo', {}, { timeoutMs })),
    ]);
  });
  const probes = pods.map((pod, i) =>
    periodic(options.probeMs, start + Math.round((i * options.probeMs) / pods.length), () =>
      timed('ExecSync', async () => {
        const res = await client.call('ExecSync', { container_id: pod.containerId, cmd: options.probeCommand, timeout: String(Math.ceil(timeoutMs / 1000)) }, { timeoutMs });
        if (res.exit_code !== 0) throw new Error(`probe exited ${res.exit_code}`);
      }),
    ),
  );
  // Open loop: a call goes out every period whether or not the previous one came back, so a
  // stall shows up as every call that waited behind it.
  const versions: Promise<void>[] = [];
  const version = periodic(options.versionMs, start, async () => {
    versions.push(timed('Version', () => client.call('Version', { version: '0.1.0' }, { timeoutMs })));
  });
  const sampler = options.sample ? periodic(options.sampleMs ?? 5000, start + (options.sampleMs ?? 5000), options.sample) : Promise.resolve();

  await Promise.all([relist, stats, ...probes, version, sampler]);
  await Promise.all(versions);
  loopDelay.disable();
  return {
    errors,
    clientLoopDelayP99Ms: Math.max(0, loopDelay.percentile(99) / 1e6 - 10),
    clientLoopDelayMaxMs: Math.max(0, loopDelay.max / 1e6 - 10),
  };
}
