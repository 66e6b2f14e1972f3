// `berthd doctor`: every prerequisite of berth and of a kubelet beside it, one
// line each. berthd runs the same checks at start (fatal ones stop it). The
// host is read under a root directory so tests can hand doctor a fixture.
import type { BerthConfig } from '../../config';
import type { RuntimeLog } from '../../common/log';
import { checkConmon, checkCriu, checkOciRuntimes } from './binary-checks';
import { checkCgroupDriver, checkCgroupMode } from './cgroup-checks';
import type { CheckResult, CheckStatus, DoctorCheck, DoctorContext } from './doctor-types';
import { HostRoot } from './host-root';
import { checkBridgeNetfilter, checkIpForward, checkOverlay, checkOverlayFeatures, checkSwap, checkUserNamespaces } from './kernel-checks';
import { checkCniPlugins, checkDiskSpace, checkPrivileges, checkSocket } from './node-checks';

export type { CheckResult, CheckStatus } from './doctor-types';

/** In the order they are printed. */
const CHECKS: { check: DoctorCheck; atStart: boolean }[] = [
  { check: checkPrivileges, atStart: true },
  { check: checkOverlay, atStart: true },
  { check: checkOverlayFeatures, atStart: true },
  { check: checkBridgeNetfilter, atStart: true },
  { check: checkIpForward, atStart: true },
  { check: checkSwap, atStart: true },
  { check: checkCgroupMode, atStart: true },
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
}

export async function runDoctor(config: BerthConfig, options: DoctorOptions = {}): Promise<DoctorReport> {
  const phase = options.phase ?? 'cli';
  const ctx: DoctorContext = { host: new HostRoot(options.hostRoot ?? '/'), config, phase, versions: new Map() };
  const chosen = CHECKS.filter((c) => phase === 'cli' || c.atStart);
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

/**
 * berthd's start: the same checks as `berthd doctor`, logged one line each
 * (ok at debug); a fatal failure stops berthd with doctor's own message.
 */
export async function checkHostAtStart(config: BerthConfig, log: RuntimeLog): Promise<DoctorReport> {
  const report = await runDoctor(config, { phase: 'start' });
  for (const r of report.results) {
    const fields = { check: r.id, ...(r.fix && r.status !== 'ok' ? { fix: r.fix } : {}) };
    if (r.status === 'ok') log.debug(fields, `host check ok: ${r.found}`);
    else if (r.status === 'warn') log.warn(fields, `host check: ${r.found}`);
    else log.error(fields, `host check failed: ${r.found}`);
  }
  const fatal = fatalResults(report);
  if (fatal.length > 0) throw new Error(`host check failed (berthd doctor says the same):\n${fatal.map(formatResult).join('\n')}`);
  const { ok, warn, fail } = report.summary;
  log.info({ ok, warn, fail }, `host checks: ${ok} ok, ${warn} warnings, ${fail} failures (berthd doctor shows how to fix each)`);
  return report;
}
