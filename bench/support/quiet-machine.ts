// Waiting for the machine to go quiet before a measured phase. On 2 cores the
// tail of the previous phase (a thousand containers' cgroups and network
// namespaces torn down by the kernel's workers, the other runtime's own
// clean-up) kept the CPUs busy for minutes and lands on whichever runtime is
// measured next: each runtime's phase starts from the same quiet machine
// instead, within a bound, and the figures say how quiet it was.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Busy and total jiffies of all CPUs, from the first line of /proc/stat. */
function cpuJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, n) => sum + n, 0);
  // idle and iowait are the 4th and 5th figures.
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export interface QuietOptions {
  /** Quiet: the CPUs were busy less than this share of the last window (0.15: 15%). */
  busyBelow?: number;
  windowMs?: number;
  /** Measure anyway after this long (the wait is reported either way); default BENCH_QUIET_MAX_S, 120 s. */
  maxWaitMs?: number;
}

export interface QuietOutcome {
  waitedMs: number;
  /** Share of CPU time busy over the last window before going on. */
  busyShare: number;
  quiet: boolean;
}

/** Resolves once the CPUs were busy less than `busyBelow` over a whole window, or after maxWaitMs. */
export async function waitForQuietMachine(options: QuietOptions = {}): Promise<QuietOutcome> {
  const busyBelow = options.busyBelow ?? 0.15;
  const windowMs = options.windowMs ?? 2000;
  const maxWaitMs = options.maxWaitMs ?? Number(process.env.BENCH_QUIET_MAX_S ?? 120) * 1000;
  const started = Date.now();
  for (;;) {
    const before = cpuJiffies();
    await sleep(windowMs);
    const after = cpuJiffies();
    const busyShare = after.total > before.total ? (after.busy - before.busy) / (after.total - before.total) : 0;
    const waitedMs = Date.now() - started;
    if (busyShare < busyBelow || waitedMs >= maxWaitMs) return { waitedMs, busyShare, quiet: busyShare < busyBelow };
  }
}

/** Waits, then says how it went in one line for the run's notes. */
export async function quietBefore(what: string, notes: string[], options?: QuietOptions): Promise<void> {
  if (process.env.BENCH_QUIET_MAX_S === '0') return;
  const outcome = await waitForQuietMachine(options);
  const share = `${Math.round(outcome.busyShare * 100)}% busy`;
  const line = outcome.quiet
    ? `${what}: machine quiet after ${(outcome.waitedMs / 1000).toFixed(0)} s (${share} over the last 2 s)`
    : `${what}: machine still ${share} after ${(outcome.waitedMs / 1000).toFixed(0)} s, measured anyway`;
  notes.push(line);
  console.log(`bench: ${line}`);
}
