// What one call costs on a populated node, and how fast a restarted daemon is
// ready again, berth vs containerd. One runtime at a time has the pods (the
// other idles), BENCH_SCALE_FIRST says which goes first:
//   1. N pods (BENCH_SCALE_PODS, 100) each with one running busybox `sleep`;
//   2. the single-call floor at that size: Version, Status, ListImages,
//      ListPodSandbox, ListContainers, one after the other on one connection
//      (BENCH_SCALE_CALLS samples each, after 3 untimed);
//   3. restart to ready (BENCH_SCALE_RESTARTS times): the daemon is stopped
//      (SIGTERM; containers keep running) and started; timed from the start
//      until Status says RuntimeReady and NetworkReady and ListContainers lists
//      all N containers running, asked every 5 ms;
//   4. more containers that exit at once (`true`) in the same pods, up to
//      BENCH_SCALE_CONTAINERS (1000) containers in all, then ListContainers again,
//      timed two ways, alternating: decoded by the client (what a Node client
//      sees), and to the answer's last byte with the bytes kept as they are (the
//      runtime's time: the ~700 KB answer takes the Node client ~9 ms to decode);
//   5. everything removed.
import { setTimeout as sleep } from 'node:timers/promises';
import { intFromEnv, runMain, runScenario, type BenchEnv, type BenchRuntime } from './support/bench-env';
import { podConfig, sleepContainerConfig, type PodSandboxConfig } from './support/pod-config';
import { quietBefore } from './support/quiet-machine';
import { RawCaller } from './support/raw-call';
import { SampleBook, type RatioTarget, type RuntimeName } from './support/samples';

const podCount = intFromEnv('BENCH_SCALE_PODS', 100, 1);
const calls = intFromEnv('BENCH_SCALE_CALLS', 50, 1);
const restarts = intFromEnv('BENCH_SCALE_RESTARTS', 3, 0);
const containerTotal = intFromEnv('BENCH_SCALE_CONTAINERS', 1000, 0);
const parallel = intFromEnv('BENCH_SCALE_PARALLEL', 8, 1);
const first = (process.env.BENCH_SCALE_FIRST || 'berth') as RuntimeName;
if (first !== 'berth' && first !== 'containerd') throw new Error(`BENCH_SCALE_FIRST: expected berth or containerd, got "${String(first)}"`);
const CALL_TIMEOUT_MS = 60_000;
const READY_POLL_MS = 5;

const TARGETS: RatioTarget[] = [
  { operation: 'Version', maxRatio: 1.5 },
  { operation: 'Status', maxRatio: 1.5 },
  { operation: 'ListImages', maxRatio: 1.5 },
  { operation: `restart to ready, ${podCount} containers (ms)`, maxRatio: 1 },
];

interface ScalePod {
  podId: string;
  config: PodSandboxConfig;
}

async function inPool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

async function bringUp(env: BenchEnv, rt: BenchRuntime): Promise<ScalePod[]> {
  const pods: ScalePod[] = [];
  await inPool([...Array(podCount).keys()], parallel, async (i) => {
    const config = podConfig(rt, `scale-${i}`);
    const { pod_sandbox_id: podId } = await rt.client.call('RunPodSandbox', { config, runtime_handler: '' }, { timeoutMs: CALL_TIMEOUT_MS });
    pods.push({ podId, config });
    const { container_id } = await rt.client.call(
      'CreateContainer',
      { pod_sandbox_id: podId, config: sleepContainerConfig(`sleeper-${i}`, env.busybox.reference), sandbox_config: config },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    await rt.client.call('StartContainer', { container_id }, { timeoutMs: CALL_TIMEOUT_MS });
  });
  return pods;
}

/** Containers that run `true` and exit, spread over the pods, until the node has `total` containers. */
async function addExitedContainers(env: BenchEnv, rt: BenchRuntime, pods: ScalePod[], total: number): Promise<void> {
  const extra = Math.max(0, total - pods.length);
  await inPool([...Array(extra).keys()], parallel, async (i) => {
    const pod = pods[i % pods.length];
    const config = { ...sleepContainerConfig(`done-${i}`, env.busybox.reference), command: ['/bin/true'] };
    const { container_id } = await rt.client.call('CreateContainer', { pod_sandbox_id: pod.podId, config, sandbox_config: pod.config }, { timeoutMs: CALL_TIMEOUT_MS });
    await rt.client.call('StartContainer', { container_id }, { timeoutMs: CALL_TIMEOUT_MS });
  });
}

async function bringDown(rt: BenchRuntime, pods: ScalePod[]): Promise<void> {
  await inPool(pods, parallel, async ({ podId }) => {
    await rt.client.call('StopPodSandbox', { pod_sandbox_id: podId }, { timeoutMs: CALL_TIMEOUT_MS }).catch(() => undefined);
    await rt.client.call('RemovePodSandbox', { pod_sandbox_id: podId }, { timeoutMs: CALL_TIMEOUT_MS }).catch(() => undefined);
  });
}

/** Ready as a kubelet sees it: runtime and network ready, and the relist shows every container running. */
async function readyWith(rt: BenchRuntime, running: number): Promise<boolean> {
  try {
    const status = await rt.client.call('Status', { verbose: false }, { timeoutMs: 2000 });
    const conditions = status.status?.conditions ?? [];
    if (!['RuntimeReady', 'NetworkReady'].every((t) => conditions.some((c) => c.type === t && c.status))) return false;
    const { containers } = await rt.client.call('ListContainers', { filter: { state: { state: 'CONTAINER_RUNNING' } } } as never, { timeoutMs: 2000 });
    return containers.length >= running;
  } catch {
    return false;
  }
}

async function restartToReady(rt: BenchRuntime, running: number): Promise<number> {
  await rt.stop();
  const started = process.hrtime.bigint();
  await rt.start(READY_POLL_MS);
  while (!(await readyWith(rt, running))) await sleep(READY_POLL_MS);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const raw = new RawCaller();

const floorCalls: Array<[string, (rt: BenchRuntime) => Promise<unknown>]> = [
  ['Version', (rt) => rt.client.call('Version', { version: '0.1.0' })],
  ['Status', (rt) => rt.client.call('Status', { verbose: false })],
  ['ListImages', (rt) => rt.client.call('ListImages', {})],
  ['ListPodSandbox', (rt) => rt.client.call('ListPodSandbox', {})],
  ['ListContainers', (rt) => rt.client.call('ListContainers', {})],
];

async function runPhase(env: BenchEnv, rt: BenchRuntime, book: SampleBook): Promise<void> {
  const pods = await bringUp(env, rt);
  try {
    await sleep(2000);
    await quietBefore(`${rt.name}: call floor`, env.notes);
    for (let i = 0; i < calls + 3; i++) {
      for (const [operation, call] of floorCalls) {
        if (i < 3) await call(rt);
        else await book.time(operation, rt.name, () => call(rt));
      }
    }
    if (restarts > 0) await quietBefore(`${rt.name}: restarts`, env.notes);
    for (let i = 0; i < restarts; i++) {
      book.record(`restart to ready, ${podCount} containers (ms)`, rt.name, await restartToReady(rt, podCount));
      // Where berthd's own start went (with BENCH_BERTHD_LOG_LEVEL=info, which logs its serving line).
      const start = rt.lastStart?.();
      if (start) console.log(`node-scale: ${rt.name} restart ${i + 1}: ${start}`);
      await sleep(1000);
    }
    if (containerTotal > podCount) {
      await addExitedContainers(env, rt, pods, containerTotal);
      await sleep(2000);
      await quietBefore(`${rt.name}: ListContainers at ${containerTotal}`, env.notes);
      const decoded = `ListContainers, ${containerTotal} containers`;
      const lastByte = `ListContainers, ${containerTotal} containers, to the last byte`;
      for (let i = 0; i < calls + 3; i++) {
        const both: Array<[string, () => Promise<unknown>]> = [
          [decoded, () => rt.client.call('ListContainers', {})],
          [lastByte, () => raw.call(rt.client.socketPath, 'ListContainers', {})],
        ];
        for (const [operation, call] of i % 2 ? both.reverse() : both) {
          if (i < 3) await call();
          else await book.time(operation, rt.name, call);
        }
      }
    }
  } finally {
    await bringDown(rt, pods);
  }
}

runMain(async () => {
  const book = new SampleBook();
  await runScenario(
    {
      scenario: 'node-scale',
      parameters: { pods: podCount, calls, restarts, containers: containerTotal, parallel, first },
      targets: TARGETS,
      run: async (env) => {
        for (const rt of env.runtimes) await rt.client.call('PullImage', { image: { image: env.busybox.reference } });
        const ordered = env.runtimes[0]?.name === first ? env.runtimes : [...env.runtimes].reverse();
        for (const rt of ordered) {
          console.log(`node-scale: ${rt.name}: ${podCount} pods, call floor, ${restarts} restarts, ${containerTotal} containers listed`);
          await quietBefore(`${rt.name}: bring-up`, env.notes);
          await runPhase(env, rt, book);
        }
      },
    },
    book,
  );
  raw.close();
});
