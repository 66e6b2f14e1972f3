// `berthd doctor`: every prerequisite of berth and of a kubelet beside it, one
// line each. berthd runs the same checks at start: the few that can find a
// fatal problem (privileges, overlay, the store's filesystem, cgroups) before
// it serves, the rest once the socket is up, so a restart is not held by
// `--version` runs and criu's check. The host is read under a root directory
// so tests can hand doctor a fixture.
import type { BerthConfig } from '../../config';
import type { RuntimeLog } from '../../common/log';
import { checkConmon, checkCriu, checkOciRuntimes } from './binary-checks';
import { checkCgroupDriver, checkCgroupMode } from './cgroup-checks';
import { HostProbeCache } from '../host-probe-cache';
import type { CheckResult, CheckStatus, DoctorCheck, DoctorContext } from './doctor-types';
import { HostRoot } from './host-root';
import { checkBridgeNetfilter, checkIpForward, checkOverlay, checkOverlayFeatures, checkSwap, checkUserNamespaces } from './kernel-checks';
import { checkCniPlugins, checkDiskSpace, checkPrivileges, checkSocket } from './node-checks';

export type { CheckResult, CheckStatus } from './doctor-types';

/** In the order they are printed. gatesStart: may find a fatal problem, so berthd waits for it before serving. */
const CHECKS: { check: DoctorCheck; atStart: boolean; gatesStart?: boolean }[] = [
  { check: checkPrivileges, atStart: true, gatesStart: true },
  { check: checkOverlay, atStart: true, gatesStart: true },
  { check: checkOverlayFeatures, atStart: true, gatesStart: true },
  { check: checkBridgeNetfilter, atStart: true },
  { check: checkIpForward, atStart: true },
  { check: checkSwap, atStart: true },
  { check: checkCgroupMode, atStart: true, gatesStart: true },
  { check: checkCgroupDriver, atStart: true },
  { check: checkConmon, atStart: true },
  { check: checkOciRuntimes, atStart: true },
  { check: checkCniPlugins, atStart: true },
  { check: checkDiskSpace, atStart: true },
  // At start the socket is berthd's own leftover, about to be replaced.
  { check: checkSocket, atStart: false },
  { check: checkUserNamespaces, atStart: true },
  { check: checkCriu, atStart: true },
];

export interface DoctorReport {
  hostRoot: string;
  results: CheckResult[];
  summary: Record<CheckStatus, number>;
  /** 0 all ok, 1 warnings, 2 failures. */
  exitCode: 0 | 1 | 2;
}

export interface DoctorOptions {
  /** Host root directory ("/" for this machine). */
  hostRoot?: string;
  phase?: 'start' | 'cli';
  /** At start: the checks that gate serving, or the others (run once berthd serves). */
  part?: 'gating' | 'rest';
  /** What programs answered before (berthd's state dir keeps it across restarts). */
  probes?: HostProbeCache;
}

export async function runDoctor(config: BerthConfig, options: DoctorOptions = {}): Promise<DoctorReport> {
  const phase = options.phase ?? 'cli';
  const ctx: DoctorContext = { host: new HostRoot(options.hostRoot ?? '/'), config, phase, probes: options.probes ?? HostProbeCache.inMemory() };
  const inPart = (gates: boolean): boolean => options.part === undefined || (options.part === 'gating') === gates;
  const chosen = CHECKS.filter((c) => (phase === 'cli' || c.atStart) && inPart(Boolean(c.gatesStart)));
  // Independent reads and a few `--version` runs: all at once, printed in order.
  const settled = await Promise.all(chosen.map(async ({ check }) => {
    try {
      return await check(ctx);
    } catch (err) {
      return [{ id: `doctor.${check.name}`, status: 'warn' as const, found: `the check itself failed: ${(err as Error).message}`, fix: 'report this as a berth bug' }];
    }
  }));
  const results = settled.flat();
  const summary = { ok: 0, warn: 0, fail: 0 };
  for (const r of results) summary[r.status]++;
  return { hostRoot: ctx.host.dir, results, summary, exitCode: summary.fail > 0 ? 2 : summary.warn > 0 ? 1 : 0 };
}

export function fatalResults(report: DoctorReport): CheckResult[] {
  return report.results.filter((r) => r.status === 'fail' && r.fatal);
}

/** One finding as doctor prints it: "fail  kernel.ip_forward  <found>" and an indented "fix:" line. */
export function formatResult(r: CheckResult): string {
  const head = `${r.status.padEnd(4)}  ${r.id.padEnd(24)}  ${r.found}`;
  return r.fix && r.status !== 'ok' ? `${head}\n${' '.repeat(32)}fix: ${r.fix}` : head;
}

export function renderDoctorText(report: DoctorReport): string {
  const lines = report.results.map(formatResult);
  const { ok, warn, fail } = report.summary;
  lines.push('', `${ok} ok, ${warn} warning${warn === 1 ? '' : 's'}, ${fail} failure${fail === 1 ? '' : 's'}${report.hostRoot === '/' ? '' : ` (host root ${report.hostRoot})`}`);
  return `${lines.join('\n')}\n`;
}

function logResults(report: DoctorReport, log: RuntimeLog): void {
  for (const r of report.results) {
    const fields = { check: r.id, ...(r.fix && r.status !== 'ok' ? { fix: r.fix } : {}) };
    if (r.status === 'ok') log.debug(fields, `host check ok: ${r.found}`);
    else if (r.status === 'warn') log.warn(fields, `host check: ${r.found}`);
    else log.error(fields, `host check failed: ${r.found}`);
  }
}

/**
 * berthd's start, before serving: the checks that can find a fatal problem,
 * logged one line each (ok at debug); a fatal failure stops berthd with
 * doctor's own message.
 */
export async function checkHostAtStart(config: BerthConfig, log: RuntimeLog, probes?: HostProbeCache): Promise<DoctorReport> {
  const report = await runDoctor(config, { phase: 'start', part: 'gating', probes });
  logResults(report, log);
  const fatal = fatalResults(report);
  if (fatal.length > 0) throw new Error(`host check failed (berthd doctor says the same):\n${fatal.map(formatResult).join('\n')}`);
  return report;
}

/** Once berthd serves: the other checks of `berthd doctor`, logged the same way, then the count of all of them. */
export async function reportHostAfterStart(config: BerthConfig, log: RuntimeLog, gating: DoctorReport, probes?: HostProbeCache): Promise<void> {
  const rest = await runDoctor(config, { phase: 'start', part: 'rest', probes });
  logResults(rest, log);
  const ok = gating.summary.ok + rest.summary.ok;
  const warn = gating.summary.warn + rest.summary.warn;
  const fail = gating.summary.fail + rest.summary.fail;
  log.info({ ok, warn, fail }, `host checks: ${ok} ok, ${warn} warnings, ${fail} failures (berthd doctor shows how to fix each)`);
}
