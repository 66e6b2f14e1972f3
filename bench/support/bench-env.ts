// What every scenario shares: a local registry holding the bench images, the
// runtimes under comparison started side by side in this process, A/B order,
// and cleanup on every exit path (including Ctrl-C).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { execFileSync } from 'node:child_process';
import type { CriClient } from '../../test/support/cri-client';
import { startRegistry, type TestRegistry } from '../../test/support/registry';
import { pushImage, type PushedImage } from '../../test/support/oci-image-builder';
import { CGROUP_ROOT } from './bench-slot';
import { BenchBerthd } from './berth';
import { describeDelta, findMetricsUrl, scrapeHistograms } from './berth-metrics';
import { busyboxImage, pauseImage } from './bench-images';
import { ContainerdProcess } from './containerd';
import { removeCgroupTree } from './host-cleanup';
import { berthHelperPids, containerdHelperPids, type ProcessInfo } from './process-memory';
import {
  evaluateTargets,
  formatTable,
  samplesOf,
  writeResult,
  type RatioTarget,
  type RuntimeName,
  type SampleBook,
  type ScenarioResult,
  type TailPercentile,
} from './samples';

export interface BenchRuntime {
  name: RuntimeName;
  client: CriClient;
  /** Where pod logs go (under the runtime's temp dir). */
  logRoot: string;
  /** cgroup parent for this runtime's pods (cgroupfs driver). */
  cgroupParent: string;
  /** True when no file of blob `digest` is left in the runtime's content store. */
  blobGone(digest: string): boolean;
  /** Unpacked layers (containerd: overlayfs snapshots; berth: layer dirs) on disk now. */
  unpackedLayerCount(): number;
  /** The daemon's process id (containerd or berthd). */
  daemonPid: number;
  /** The runtime's per-container helpers among `processes` (berth: conmon; containerd: its shims). */
  helperPids(processes: readonly ProcessInfo[]): number[];
  /** berthd's /metrics, when found. */
  metricsUrl?: string;
  /** Stops the daemon (its containers keep running). */
  stop(): Promise<void>;
  /** Starts it again; resolves once it answers (asked every `pollMs`). */
  start(pollMs: number): Promise<void>;
  /** berthd: its last start as its serving line tells it (startMs, cpuMs, phases), when logged (log level info or below). */
  lastStart?(): string | undefined;
}

/** CPU time (user + system, plus reaped children) the process used so far, in ms. */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime is field 14 overall.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

// USER_HZ is 100 on every Linux architecture Node runs on.
const CLOCK_TICKS_PER_SECOND = 100;

function entriesIn(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

export interface BenchEnv {
  registry: TestRegistry;
  runtimes: BenchRuntime[];
  pause: PushedImage;
  busybox: PushedImage;
  /** Runtimes in the order for iteration `i`: ABAB... then BABA..., so neither always goes first. */
  order(i: number): BenchRuntime[];
  notes: string[];
}

export function intFromEnv(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer >= ${min}, got "${raw}"`);
  return n;
}

export function selectedRuntimes(): RuntimeName[] {
  const only = process.env.BENCH_ONLY;
  if (!only) return ['berth', 'containerd'];
  if (only !== 'berth' && only !== 'containerd') throw new Error(`BENCH_ONLY: expected berth or containerd, got "${only}"`);
  return [only];
}

// berth_cri_request_duration_seconds is berthd's own time per call: set beside the client's figure, the rest is transport and the client.
const BERTH_LATENCY_METRICS = ['berth_oci_runtime_call_duration_seconds', 'berth_cni_call_duration_seconds', 'berth_image_pull_duration_seconds', 'berth_cri_request_duration_seconds'];

function hostFacts(): Record<string, string | number> {
  const version = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    kernel: release(),
    cpus: cpus().length,
    node: process.version,
    containerd: version('containerd', ['--version']),
    runc: version('runc', ['--version']),
    conmon: version('conmon', ['--version']),
  };
}

export interface ScenarioSpec {
  scenario: string;
  parameters: Record<string, string | number | boolean>;
  targets: RatioTarget[];
  /** Extra images to push before the runtimes start. */
  prepare?: (registry: TestRegistry) => Promise<void>;
  run: (env: BenchEnv, book: SampleBook) => Promise<void>;
  /** The tail percentile the printed table shows (p95 unless said). */
  tail?: TailPercentile;
}

/** Sets everything up, runs the scenario, prints the table, writes the JSON, tears everything down. */
export async function runScenario(spec: ScenarioSpec, book: SampleBook): Promise<ScenarioResult> {
  const names = selectedRuntimes();
  const startedAt = new Date().toISOString();
  // Other work on the machine skews both runtimes; the A/B order spreads it, the load average records it.
  const loadAtStart = loadavg()[0];
  const notes: string[] = [];
  const teardown: Array<() => Promise<void>> = [];
  let tearingDown: Promise<void> | undefined;
  const tearDown = (): Promise<void> => {
    tearingDown ??= (async () => {
      for (const step of teardown.reverse()) {
        try {
          await step();
        } catch (err) {
          console.error(`bench: cleanup step failed: ${(err as Error).message}`);
        }
      }
      removeCgroupTree(CGROUP_ROOT);
    })();
    return tearingDown;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`bench: ${signal}, cleaning up`);
    void tearDown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const registry = await startRegistry();
    teardown.push(() => registry.stop());
    const pause = await pushImage(registry, 'bench/pause:1', pauseImage());
    const busybox = await pushImage(registry, 'bench/busybox:1', busyboxImage());
    await spec.prepare?.(registry);

    const runtimes: BenchRuntime[] = [];
    for (const name of names) {
      if (name === 'containerd') {
        const ctrd = new ContainerdProcess({ sandboxImage: pause.reference, plainHttpRegistries: [registry.host] });
        teardown.push(() => ctrd.cleanup());
        await ctrd.start();
        runtimes.push({
          name,
          get client() {
            return ctrd.client;
          },
          logRoot: `${ctrd.dir}/pod-logs`,
          cgroupParent: `/${CGROUP_ROOT}/containerd`,
          blobGone: (digest) => !existsSync(ctrd.contentBlobPath(digest)),
          unpackedLayerCount: () => entriesIn(ctrd.snapshotsDir()),
          get daemonPid() {
            return ctrd.pid!;
          },
          helperPids: (processes) => containerdHelperPids(processes, ctrd.socket),
          stop: () => ctrd.stop(),
          start: (pollMs) => ctrd.start(60_000, pollMs),
        });
      } else {
        const berth = new BenchBerthd({ pauseImage: pause.reference, plainHttpRegistries: [registry.host] });
        teardown.push(() => berth.cleanup());
        await berth.start();
        runtimes.push({
          name,
          get client() {
            return berth.berthd.client;
          },
          logRoot: `${berth.extraDir}/pod-logs`,
          cgroupParent: `/${CGROUP_ROOT}/berth`,
          blobGone: (digest) => !existsSync(`${berth.root}/content/${digest.replace(':', '/')}`),
          unpackedLayerCount: () => entriesIn(`${berth.root}/layers`),
          get daemonPid() {
            return berth.berthd.pid!;
          },
          helperPids: (processes) => berthHelperPids(processes, berth.root),
          stop: async () => void (await berth.berthd.stop()),
          start: (pollMs) => berth.berthd.start(60_000, pollMs),
          lastStart: () => {
            const lines = berth.berthd.logs().split('\n').filter((line) => line.includes('"msg":"berthd serving CRI v1"'));
            const last = lines.length ? (JSON.parse(lines[lines.length - 1]) as Record<string, unknown>) : undefined;
            return last && JSON.stringify({ startMs: last.startMs, cpuMs: last.cpuMs, phases: last.phases, start: last.start });
          },
        });
      }
    }
    const env: BenchEnv = {
      registry,
      runtimes,
      pause,
      busybox,
      notes,
      order: (i) => (i % 2 === 0 ? runtimes : [...runtimes].reverse()),
    };
    const berth = runtimes.find((rt) => rt.name === 'berth');
    const metricsUrl = berth ? await findMetricsUrl(berth.daemonPid).catch(() => undefined) : undefined;
    if (berth) berth.metricsUrl = metricsUrl;
    const before = metricsUrl ? await scrapeHistograms(metricsUrl, BERTH_LATENCY_METRICS).catch(() => undefined) : undefined;
    await spec.run(env, book);
    if (metricsUrl && before) {
      const after = await scrapeHistograms(metricsUrl, BERTH_LATENCY_METRICS).catch(() => undefined);
      if (after) for (const line of describeDelta(before, after)) notes.push(`berth internals (warm-up included): ${line}`);
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await tearDown();
  }

  const rows = book.rows();
  const result: ScenarioResult = {
    scenario: spec.scenario,
    startedAt,
    finishedAt: new Date().toISOString(),
    runtimes: names,
    parameters: spec.parameters,
    host: { ...hostFacts(), loadavg1AtStart: loadAtStart, loadavg1AtEnd: loadavg()[0] },
    rows,
    targets: evaluateTargets(rows, spec.targets),
    samples: samplesOf(book, names),
    notes,
  };
  const file = writeResult(result);
  console.log(`\n== ${spec.scenario} (ms; ratio = berth / containerd) ==`);
  console.log(formatTable(rows, spec.tail));
  for (const t of result.targets) {
    const verdict = t.met === null ? 'not measured' : t.met ? 'MET' : 'MISSED';
    console.log(`target: ${t.operation} p50 ratio <= ${t.maxRatio}: ${t.ratioP50 === null ? '-' : t.ratioP50.toFixed(2)} ${verdict}`);
  }
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`load average (1 min): ${loadAtStart.toFixed(2)} at start, ${result.host.loadavg1AtEnd} at end, ${cpus().length} cpus`);
  console.log(`results: ${file}`);
  return result;
}

/** Entry point helper: runs `main`, exits non-zero with the message on failure. */
export function runMain(main: () => Promise<unknown>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
