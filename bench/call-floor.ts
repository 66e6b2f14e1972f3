// What one cheap call costs each side, berth vs containerd. Two modes
// (BENCH_FLOOR_MODE):
//
// warm (default), on an idle node: Version and Status, BENCH_FLOOR_CALLS
// (1000) sequential calls per round on one connection, BENCH_FLOOR_ROUNDS (6)
// rounds with the runtimes' order alternating. Per round and call: wall time,
// the daemon's CPU (/proc/PID/stat) and this client's CPU (process.cpuUsage;
// the bench does nothing else meanwhile). The daemon's CPU is the transport's
// cost plus the handler's; the client's CPU shows how the answer was written
// (an answer in one write wakes the client once).
//
// cold: what node-scale's floor samples, a daemon's first calls. Each round
// restarts both daemons (order alternating), waits BENCH_FLOOR_COLD_SETTLE_MS
// (1500) for the work after a start, then makes BENCH_FLOOR_COLD_CALLS (60)
// rounds of Version, Status, ListImages, as node-scale does; the first 3 of
// each are untimed, as node-scale's. Per call: wall time (every sample), and
// per round the daemon's CPU per timed call from every thread's schedstat
// (nanoseconds, not /proc/PID/stat's 10 ms ticks) and, for berthd, its main
// thread's alone (the event loop: transport, handlers, metrics). The client
// (this process) is warmed first, so only the daemons are cold.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { intFromEnv, processCpuMs, runMain, runScenario, type BenchEnv, type BenchRuntime } from './support/bench-env';
import { SampleBook, type RatioTarget } from './support/samples';

const mode = process.env.BENCH_FLOOR_MODE || 'warm';
if (mode !== 'warm' && mode !== 'cold') throw new Error(`BENCH_FLOOR_MODE: expected warm or cold, got "${mode}"`);
const callsPerRound = intFromEnv('BENCH_FLOOR_CALLS', 1000, 1);
const rounds = intFromEnv('BENCH_FLOOR_ROUNDS', 6, 1);
const coldCalls = intFromEnv('BENCH_FLOOR_COLD_CALLS', 60, 4);
const coldSettleMs = intFromEnv('BENCH_FLOOR_COLD_SETTLE_MS', 1500, 0);
const UNTIMED_COLD_CALLS = 3;
const METHODS = ['Version', 'Status'] as const;

const COLD_CALLS: Array<[string, (rt: BenchRuntime) => Promise<unknown>]> = [
  ['Version', (rt) => rt.client.call('Version', { version: '0.1.0' })],
  ['Status', (rt) => rt.client.call('Status', { verbose: false })],
  ['ListImages', (rt) => rt.client.call('ListImages', {})],
];

const TARGETS: RatioTarget[] =
  mode === 'warm'
    ? METHODS.map((method) => ({ operation: `${method}: wall per call (ms)`, maxRatio: 1.5 }))
    : COLD_CALLS.map(([method]) => ({ operation: `cold ${method} (ms)`, maxRatio: 1.5 }));

async function round(rt: BenchRuntime, method: (typeof METHODS)[number], book: SampleBook): Promise<void> {
  const call = (): Promise<unknown> => (method === 'Version' ? rt.client.call('Version', { version: 'v1' }) : rt.client.call('Status', { verbose: false }));
  for (let i = 0; i < 20; i++) await call();
  const daemonBefore = processCpuMs(rt.daemonPid);
  const clientBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  for (let i = 0; i < callsPerRound; i++) await call();
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const client = process.cpuUsage(clientBefore);
  book.record(`${method}: wall per call (ms)`, rt.name, wallMs / callsPerRound);
  book.record(`${method}: daemon CPU per call (us)`, rt.name, ((processCpuMs(rt.daemonPid) - daemonBefore) * 1000) / callsPerRound);
  book.record(`${method}: client CPU per call (us)`, rt.name, (client.user + client.system) / callsPerRound);
}

/** CPU time a thread of `pid` ran, in ns (schedstat's first field); 0 for a thread gone meanwhile. */
function threadCpuNs(pid: number, tid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

/** CPU time of all of `pid`'s threads, in ns (threads ending between two reads take theirs with them). */
function processCpuNs(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => sum + threadCpuNs(pid, Number(tid)), 0);
}

async function coldRound(rt: BenchRuntime, book: SampleBook): Promise<void> {
  await rt.stop();
  await rt.start(20);
  await sleep(coldSettleMs);
  const pid = rt.daemonPid;
  let processBefore = 0;
  let mainBefore = 0;
  for (let i = 0; i < coldCalls; i++) {
    if (i === UNTIMED_COLD_CALLS) {
      processBefore = processCpuNs(pid);
      mainBefore = threadCpuNs(pid, pid);
    }
    for (const [method, call] of COLD_CALLS) {
      if (i < UNTIMED_COLD_CALLS) await call(rt);
      else await book.time(`cold ${method} (ms)`, rt.name, () => call(rt));
    }
  }
  const timed = (coldCalls - UNTIMED_COLD_CALLS) * COLD_CALLS.length;
  book.record('cold: daemon CPU per call, all threads (us)', rt.name, (processCpuNs(pid) - processBefore) / 1000 / timed);
  if (rt.name === 'berth') book.record('cold: berthd main thread CPU per call (us)', rt.name, (threadCpuNs(pid, pid) - mainBefore) / 1000 / timed);
}

async function runCold(env: BenchEnv, book: SampleBook): Promise<void> {
  for (const rt of env.runtimes) {
    // Two images listed, as node-scale's ListImages lists (pause and busybox).
    for (const image of [env.pause, env.busybox]) await rt.client.call('PullImage', { image: { image: image.reference } });
    // This client's own code warmed on both, so the figures are the daemons' first calls, not the client's.
    for (let i = 0; i < 300; i++) for (const [, call] of COLD_CALLS) await call(rt);
  }
  for (let i = 0; i < rounds; i++) {
    for (const rt of env.order(i)) await coldRound(rt, book);
  }
}

runMain(async () => {
  const book = new SampleBook();
  await runScenario(
    {
      scenario: mode === 'warm' ? 'call-floor' : 'call-floor-cold',
      parameters: mode === 'warm' ? { mode, callsPerRound, rounds } : { mode, coldCalls, rounds, coldSettleMs },
      targets: TARGETS,
      tail: 'p95',
      run: async (env) => {
        if (mode === 'cold') return runCold(env, book);
        for (let i = 0; i < rounds; i++) {
          for (const rt of env.order(i)) for (const method of METHODS) await round(rt, method, book);
        }
      },
    },
    book,
  );
});
