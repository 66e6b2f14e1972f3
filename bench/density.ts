// A full node, berth vs containerd in one run: N pods (default 110, the
// kubelet's default maximum) each running one busybox `sleep`, brought up
// with a kubelet's parallelism, then a minute of what a kubelet keeps asking
// (support/kubelet-load.ts), then brought down. One runtime at a time, the
// other idle, so each has the machine; BENCH_DENSITY_FIRST says which goes
// first (alternate it between runs). Reports p50/p99 of every call, berthd's
// event-loop delay, the PSS of each daemon and of its helpers (conmon /
// containerd-shim), CPU used, and the time to bring the pods up and down.
import { setTimeout as sleep } from 'node:timers/promises';
import { intFromEnv, processCpuMs, runMain, runScenario, type BenchEnv, type BenchRuntime } from './support/bench-env';
import { scrapeEventLoopDelay } from './support/berth-metrics';
import { quietBefore } from './support/quiet-machine';
import { driveKubeletLoad, type DensityPod } from './support/kubelet-load';
import { podConfig, sleepContainerConfig } from './support/pod-config';
import { listProcesses, podProcessPids, totalPssMiB } from './support/process-memory';
import { SampleBook, type RatioTarget, type RuntimeName } from './support/samples';

const podCount = intFromEnv('BENCH_DENSITY_PODS', 110, 1);
const loadSeconds = intFromEnv('BENCH_DENSITY_SECONDS', 60, 10);
const parallel = intFromEnv('BENCH_DENSITY_PARALLEL', 8, 1);
const settleMs = intFromEnv('BENCH_DENSITY_SETTLE_MS', 5000, 0);
// berthd retires idle layer workers (a V8 isolate each) 15 s after its last layer: "idle" is read
// after that, so it is what an idle node's daemon holds, not the tail of the warm-up pull.
const idleAfterPullMs = intFromEnv('BENCH_DENSITY_IDLE_AFTER_PULL_MS', 20_000, 0);
const first = (process.env.BENCH_DENSITY_FIRST || 'berth') as RuntimeName;
if (first !== 'berth' && first !== 'containerd') throw new Error(`BENCH_DENSITY_FIRST: expected berth or containerd, got "${String(first)}"`);
const CALL_TIMEOUT_MS = 30_000;
const PROBE_COMMAND = ['true'];

/** The targets; memory's depends on the node's size (0.7x at 20 pods, 0.4x at 110). */
function targets(pods: number): RatioTarget[] {
  const out: RatioTarget[] = [
    { operation: 'Version', maxRatio: 1.5 },
    { operation: 'ExecSync', maxRatio: 0.7 },
    { operation: 'StopPodSandbox', maxRatio: 0.5 },
  ];
  if (pods >= 100) out.push({ operation: 'PSS daemon+helpers after load (MiB)', maxRatio: 0.4 });
  else if (pods <= 20) out.push({ operation: 'PSS daemon+helpers after load (MiB)', maxRatio: 0.7 });
  return out;
}

/** Runs `work` over `items` with at most `limit` at once; every item is tried, the first failure is rethrown. */
async function inPool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await work(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure;
}

interface MemoryFigures {
  daemon: number;
  helpers: number;
  helperCount: number;
  pause: number;
}

function memoryOf(rt: BenchRuntime): MemoryFigures {
  const processes = listProcesses();
  const helpers = rt.helperPids(processes);
  return {
    daemon: totalPssMiB([rt.daemonPid]),
    helpers: totalPssMiB(helpers),
    helperCount: helpers.length,
    // containerd runs a pause container per pod; berth pins namespaces instead.
    pause: totalPssMiB(podProcessPids(processes, rt.cgroupParent, 'pause')),
  };
}

class DensityPhase {
  readonly pods: DensityPod[] = [];
  private readonly busy = new Set<DensityPod>();

  constructor(private readonly env: BenchEnv, private readonly rt: BenchRuntime, private readonly book: SampleBook) {}

  private async timed<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return this.book.time(operation, this.rt.name, work);
  }

  /** One pod with its container, as the kubelet makes it; recorded in `pods` as soon as the pod exists. */
  private async podUp(index: number, record: boolean): Promise<DensityPod> {
    const { client } = this.rt;
    const t = <R>(op: string, work: () => Promise<R>): Promise<R> => (record ? this.timed(op, work) : work());
    const config = podConfig(this.rt, `density-${index}`);
    const { pod_sandbox_id: podId } = await t('RunPodSandbox', () => client.call('RunPodSandbox', { config, runtime_handler: '' }, { timeoutMs: CALL_TIMEOUT_MS }));
    const pod: DensityPod = { podId, containerId: '' };
    this.pods.push(pod);
    const { container_id: containerId } = await t('CreateContainer', () =>
      client.call('CreateContainer', { pod_sandbox_id: podId, config: sleepContainerConfig(`sleeper-${index}`, this.env.busybox.reference), sandbox_config: config }, { timeoutMs: CALL_TIMEOUT_MS }),
    );
    pod.containerId = containerId;
    await t('StartContainer', () => client.call('StartContainer', { container_id: containerId }, { timeoutMs: CALL_TIMEOUT_MS }));
    return pod;
  }

  /** Stops and removes one pod (its container goes with it), as the kubelet does on deletion. */
  private async podDown(pod: DensityPod, record: boolean): Promise<void> {
    if (this.busy.has(pod)) return;
    this.busy.add(pod);
    const { client } = this.rt;
    const t = <R>(op: string, work: () => Promise<R>): Promise<R> => (record ? this.timed(op, work) : work());
    if (pod.containerId) await t('StopContainer', () => client.call('StopContainer', { container_id: pod.containerId, timeout: '0' }, { timeoutMs: CALL_TIMEOUT_MS }));
    await t('StopPodSandbox', () => client.call('StopPodSandbox', { pod_sandbox_id: pod.podId }, { timeoutMs: CALL_TIMEOUT_MS }));
    await t('RemovePodSandbox', () => client.call('RemovePodSandbox', { pod_sandbox_id: pod.podId }, { timeoutMs: CALL_TIMEOUT_MS }));
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  async warmUp(): Promise<void> {
    const pod = await this.podUp(-1, false);
    await this.podDown(pod, false);
  }

  async bringUp(count: number): Promise<void> {
    const started = process.hrtime.bigint();
    await inPool([...Array(count).keys()], parallel, async (i) => void (await this.podUp(i, true)));
    this.book.record(`time to bring ${count} pods up (ms)`, this.rt.name, Number(process.hrtime.bigint() - started) / 1e6);
  }

  async bringDown(): Promise<void> {
    const count = this.pods.length;
    const started = process.hrtime.bigint();
    await inPool([...this.pods], parallel, (pod) => this.podDown(pod, true));
    this.book.record(`time to bring ${count} pods down (ms)`, this.rt.name, Number(process.hrtime.bigint() - started) / 1e6);
  }

  /** Whatever is left after a failure, best effort and untimed. */
  async removeLeftovers(): Promise<void> {
    this.busy.clear();
    await inPool([...this.pods], parallel, (pod) => this.podDown(pod, false).catch(() => undefined));
  }

  recordMemory(when: string, figures: MemoryFigures): void {
    const { name } = this.rt;
    this.book.record(`PSS daemon ${when} (MiB)`, name, figures.daemon);
    if (when === 'idle') return;
    this.book.record(`PSS helpers ${when} (MiB)`, name, figures.helpers);
    this.book.record(`PSS daemon+helpers ${when} (MiB)`, name, figures.daemon + figures.helpers);
    if (figures.pause > 0) this.book.record(`PSS pause processes ${when} (MiB)`, name, figures.pause);
  }
}

async function runPhase(env: BenchEnv, rt: BenchRuntime, book: SampleBook, pulledAt: number): Promise<void> {
  const phase = new DensityPhase(env, rt, book);
  try {
    await phase.warmUp();
    await sleep(Math.max(settleMs, pulledAt + idleAfterPullMs - Date.now()));
    phase.recordMemory('idle', memoryOf(rt));
    await phase.bringUp(podCount);
    await sleep(settleMs);
    const up = memoryOf(rt);
    phase.recordMemory('after bring-up', up);
    if (up.helperCount !== podCount) env.notes.push(`${rt.name}: ${up.helperCount} helper processes for ${podCount} pods`);

    const helperPids = rt.helperPids(listProcesses());
    const cpuBefore = [processCpuMs(rt.daemonPid), helperPids.reduce((sum, pid) => sum + safeCpuMs(pid), 0)];
    const metricsUrl = rt.metricsUrl;
    // Scraping starts a fresh window: the first figures cover the load only.
    if (metricsUrl) await scrapeEventLoopDelay(metricsUrl).catch(() => undefined);
    const outcome = await driveKubeletLoad(
      rt,
      phase.pods,
      {
        durationMs: loadSeconds * 1000,
        relistMs: 1000,
        statsMs: 10_000,
        probeMs: 10_000,
        versionMs: 100,
        callTimeoutMs: CALL_TIMEOUT_MS,
        probeCommand: PROBE_COMMAND,
        sampleMs: 5000,
        sample: metricsUrl
          ? async () => {
              const delay = await scrapeEventLoopDelay(metricsUrl).catch(() => undefined);
              if (!delay) return;
              book.record('event loop delay p99, per 5 s window (ms)', rt.name, delay.p99Ms);
              book.record('event loop delay max, per 5 s window (ms)', rt.name, delay.maxMs);
            }
          : undefined,
      },
      book,
    );
    book.record('CPU daemon during load (ms)', rt.name, processCpuMs(rt.daemonPid) - cpuBefore[0]);
    book.record('CPU helpers during load (ms)', rt.name, helperPids.reduce((sum, pid) => sum + safeCpuMs(pid), 0) - cpuBefore[1]);
    for (const [what, count] of outcome.errors) env.notes.push(`${rt.name}: ${count} failed call(s) ${what}`);
    env.notes.push(`${rt.name}: the benchmark's own event loop ran late by p99 ${outcome.clientLoopDelayP99Ms.toFixed(1)} ms, max ${outcome.clientLoopDelayMaxMs.toFixed(1)} ms during the load`);
    phase.recordMemory('after load', memoryOf(rt));
    await phase.bringDown();
  } finally {
    await phase.removeLeftovers();
  }
}

function safeCpuMs(pid: number): number {
  try {
    return processCpuMs(pid);
  } catch {
    return 0;
  }
}

runMain(async () => {
  const book = new SampleBook();
  await runScenario(
    {
      scenario: 'density',
      parameters: { pods: podCount, loadSeconds, parallel, first, idleAfterPullMs, probe: PROBE_COMMAND.join(' '), relistMs: 1000, statsMs: 10_000, probeMs: 10_000, versionMs: 100 },
      targets: targets(podCount),
      tail: 'p99',
      run: async (env) => {
        for (const rt of env.runtimes) await rt.client.call('PullImage', { image: { image: env.busybox.reference } });
        const pulledAt = Date.now();
        const ordered = env.runtimes[0]?.name === first ? env.runtimes : [...env.runtimes].reverse();
        for (const rt of ordered) {
          console.log(`density: ${rt.name}: ${podCount} pods up, ${loadSeconds} s of kubelet load, down`);
          await quietBefore(`${rt.name}: density phase`, env.notes);
          await runPhase(env, rt, book, pulledAt);
          await sleep(settleMs);
        }
      },
    },
    book,
  );
});
