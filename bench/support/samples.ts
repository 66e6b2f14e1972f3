// Sample statistics, the side-by-side table and the JSON results of a
// benchmark run. Ratios are berth / containerd: below 1 means berth is faster.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../test/support/berthd-process';

export type RuntimeName = 'berth' | 'containerd';

export interface SampleSummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Percentile by linear interpolation between closest ranks (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (sorted.length === 1) return sorted[0];
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

export function summarize(samples: readonly number[]): SampleSummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((acc, v) => acc + v, 0);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    min: sorted.length ? sorted[0] : Number.NaN,
    max: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
  };
}

/** Milliseconds per operation, per runtime, in the order operations were first recorded. */
export class SampleBook {
  private readonly samples = new Map<string, Record<RuntimeName, number[]>>();

  record(operation: string, runtime: RuntimeName, ms: number): void {
    let entry = this.samples.get(operation);
    if (!entry) {
      entry = { berth: [], containerd: [] };
      this.samples.set(operation, entry);
    }
    entry[runtime].push(ms);
  }

  /** Runs `work`, records its wall time under `operation`, returns its result. */
  async time<T>(operation: string, runtime: RuntimeName, work: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    const result = await work();
    this.record(operation, runtime, Number(process.hrtime.bigint() - start) / 1e6);
    return result;
  }

  operations(): string[] {
    return [...this.samples.keys()];
  }

  raw(operation: string, runtime: RuntimeName): number[] {
    return this.samples.get(operation)?.[runtime] ?? [];
  }

  rows(): ComparisonRow[] {
    return this.operations().map((operation) => {
      const berth = summarize(this.raw(operation, 'berth'));
      const containerd = summarize(this.raw(operation, 'containerd'));
      return {
        operation,
        berth: berth.count ? berth : null,
        containerd: containerd.count ? containerd : null,
        ratioP50: ratio(berth.p50, containerd.p50),
        ratioP95: ratio(berth.p95, containerd.p95),
        ratioP99: ratio(berth.p99, containerd.p99),
        ratioMean: ratio(berth.mean, containerd.mean),
      };
    });
  }
}

export interface ComparisonRow {
  operation: string;
  berth: SampleSummary | null;
  containerd: SampleSummary | null;
  /** berth / containerd; null when either side has no samples. */
  ratioP50: number | null;
  ratioP95: number | null;
  ratioP99: number | null;
  ratioMean: number | null;
}

function ratio(berth: number, containerd: number): number | null {
  if (!Number.isFinite(berth) || !Number.isFinite(containerd) || containerd <= 0) return null;
  return berth / containerd;
}

function ms(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v.toFixed(2);
}

function x(v: number | null): string {
  return v === null ? '-' : `${v.toFixed(2)}x`;
}

export type TailPercentile = 'p95' | 'p99';

/** The comparison as an aligned text table (milliseconds unless the operation names its unit; ratios berth/containerd). */
export function formatTable(rows: readonly ComparisonRow[], tail: TailPercentile = 'p95'): string {
  const header = ['operation', 'berth p50', 'containerd p50', 'ratio p50', `berth ${tail}`, `containerd ${tail}`, `ratio ${tail}`, 'n'];
  const tailRatio = (r: ComparisonRow): number | null => (tail === 'p99' ? r.ratioP99 : r.ratioP95);
  const body = rows.map((r) => [
    r.operation,
    ms(r.berth?.p50),
    ms(r.containerd?.p50),
    x(r.ratioP50),
    ms(r.berth?.[tail]),
    ms(r.containerd?.[tail]),
    x(tailRatio(r)),
    `${r.berth?.count ?? 0}/${r.containerd?.count ?? 0}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...body.map(line)].join('\n');
}

/** A target the issue sets: `operation`'s p50 ratio must not exceed `maxRatio`. */
export interface RatioTarget {
  operation: string;
  maxRatio: number;
}

export interface ScenarioResult {
  scenario: string;
  startedAt: string;
  finishedAt: string;
  runtimes: RuntimeName[];
  parameters: Record<string, string | number | boolean>;
  host: Record<string, string | number>;
  rows: ComparisonRow[];
  targets: Array<RatioTarget & { ratioP50: number | null; met: boolean | null }>;
  samples: Record<string, Partial<Record<RuntimeName, number[]>>>;
  notes: string[];
}

export function evaluateTargets(rows: readonly ComparisonRow[], targets: readonly RatioTarget[]): ScenarioResult['targets'] {
  return targets.map((t) => {
    const row = rows.find((r) => r.operation === t.operation);
    const r = row?.ratioP50 ?? null;
    return { ...t, ratioP50: r, met: r === null ? null : r <= t.maxRatio };
  });
}

/** Where this run's JSON goes: bench/results/<run id>/ (BENCH_RUN_ID, set by run.sh, groups the scenarios of one run). */
export function resultsDir(): string {
  const runId = process.env.BENCH_RUN_ID || new Date().toISOString().replace(/[:.]/g, '-');
  return join(REPO_ROOT, 'bench', 'results', runId);
}

export function writeResult(result: ScenarioResult): string {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${result.scenario}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export function samplesOf(book: SampleBook, runtimes: readonly RuntimeName[]): ScenarioResult['samples'] {
  const out: ScenarioResult['samples'] = {};
  for (const op of book.operations()) {
    out[op] = {};
    for (const rt of runtimes) out[op][rt] = book.raw(op, rt).map((v) => Math.round(v * 1000) / 1000);
  }
  return out;
}
