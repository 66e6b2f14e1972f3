// What one cheap call costs each side, berth vs containerd, on an idle node:
// Version and Status, BENCH_FLOOR_CALLS (1000) sequential calls per round on
// one connection, BENCH_FLOOR_ROUNDS (6) rounds with the runtimes' order
// alternating. Per round and call: wall time, the daemon's CPU
// (/proc/PID/stat) and this client's CPU (process.cpuUsage; the bench does
// nothing else meanwhile). The daemon's CPU is the transport's cost plus the
// handler's; the client's CPU shows how the answer was written (an answer in
// one write wakes the client once).
import { intFromEnv, processCpuMs, runMain, runScenario, type BenchRuntime } from './support/bench-env';
import { SampleBook, type RatioTarget } from './support/samples';

const callsPerRound = intFromEnv('BENCH_FLOOR_CALLS', 1000, 1);
const rounds = intFromEnv('BENCH_FLOOR_ROUNDS', 6, 1);
const METHODS = ['Version', 'Status'] as const;

const TARGETS: RatioTarget[] = METHODS.map((method) => ({ operation: `${method}: wall per call (ms)`, maxRatio: 1.5 }));

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

runMain(async () => {
  const book = new SampleBook();
  await runScenario(
    {
      scenario: 'call-floor',
      parameters: { callsPerRound, rounds },
      targets: TARGETS,
      tail: 'p95',
      run: async (env) => {
        for (let i = 0; i < rounds; i++) {
          for (const rt of env.order(i)) for (const method of METHODS) await round(rt, method, book);
        }
      },
    },
    book,
  );
});
