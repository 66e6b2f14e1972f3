// Which OCI runtime versions berthd runs, decided once at start from the
// version each handler's binary reports. A runtime older than the fix of the
// last container-escape advisory (runtime/host/doctor/runtime-advisories.ts:
// runc 1.2.8 / 1.3.3 / 1.4.0-rc.3 for CVE-2025-31133, -52565 and -52881, which
// also covers CVE-2024-21626 fixed in 1.1.12) is refused: berthd does not
// start with it as the default handler, and pods asking for another such
// handler get FAILED_PRECONDITION. oci.runtimes.<handler>.min_version replaces
// the advisory table with a plain minimum. Distributions backport fixes
// without a new upstream version (Debian 12's runc 1.1.5+ds1-1+deb12u1 carries
// the CVE-2024-21626 fix, not the 2025 ones), so a distribution build below the
// minimum runs with a loud warning instead, unless oci.distribution_builds is
// "refuse". The runc fast paths (releasing exec.fifo, removing runc's state
// directly; runtime/oci/oci-runtime.ts) depend on runc's internals and are used
// only on the runc series they were tested with.
import { basename } from 'node:path';
import type { RuntimeLog } from '../common/log';
import type { BerthConfig } from '../config';
import { compareVersions, versionOf } from './binaries';
import { looksLikeDistributionBuild, openAdvisories } from './doctor/runtime-advisories';

/** runc series whose on-disk state berth's fast paths were tested against. */
export const FAST_PATH_RUNC_SERIES = ['1.1', '1.2'] as const;

export interface RuntimeVersionVerdict {
  handler: string;
  /** runc, crun, ... (the binary's name). */
  kind: string;
  versionText: string;
  version: string;
  distributionBuild: boolean;
  /** The plain minimum configured, or "" when berth's advisory table decides. */
  minimum: string;
  /** The advisories still open for this version (ids), when the table decides. */
  openAdvisories: string[];
  verdict: 'ok' | 'warn' | 'refused' | 'unknown';
  /** Why, in one sentence (for the start log, Status and the refusal). */
  message: string;
  /** Whether berth's runc fast paths are used for this handler. */
  fastPaths: boolean;
}

function series(version: string): string {
  return version.split(/[-+~]/)[0].split('.').slice(0, 2).join('.');
}

/** The verdict on one handler's runtime, from the first line of its --version. */
export function judgeRuntimeVersion(config: BerthConfig, handler: string, binaryPath: string, versionText: string): RuntimeVersionVerdict {
  const runtime = config.oci.runtimes[handler];
  const kind = basename(binaryPath || runtime?.path || handler);
  const version = versionOf(versionText);
  const minimum = runtime?.min_version ?? '';
  const distributionBuild = looksLikeDistributionBuild(versionText);
  const fastPaths = kind === 'runc' && (FAST_PATH_RUNC_SERIES as readonly string[]).includes(series(version));
  const base = { handler, kind, versionText, version, distributionBuild, minimum, fastPaths };
  if (!version) {
    return { ...base, openAdvisories: [], verdict: 'unknown', message: `${kind} for handler "${handler}" reports no version ("${versionText}"); berth cannot tell whether it predates a container-escape fix` };
  }
  const open = minimum ? [] : openAdvisories(kind, version).filter((a) => a.severity === 'high');
  const tooOld = minimum ? compareVersions(version, minimum) < 0 : open.length > 0;
  const advisoryIds = open.flatMap((a) => a.ids);
  if (!tooOld) return { ...base, openAdvisories: advisoryIds, verdict: 'ok', message: `${kind} ${version} for handler "${handler}"` };
  const why = minimum
    ? `older than oci.runtimes.${handler}.min_version ${minimum}`
    : `older than the fix of ${open.map((a) => `${a.ids.join('/')} (fixed in ${a.fixedIn.join(', ')})`).join('; ')}`;
  if (distributionBuild && config.oci.distribution_builds === 'warn') {
    return {
      ...base, openAdvisories: advisoryIds, verdict: 'warn',
      message: `${kind} ${version} for handler "${handler}" is a distribution build ${why}: it runs only because distributions backport fixes without changing the version; check its changelog, and set oci.distribution_builds = "refuse" to refuse such builds`,
    };
  }
  return {
    ...base, openAdvisories: advisoryIds, verdict: 'refused',
    message: `${kind} ${version} for handler "${handler}" is ${why}; install a fixed release, or (knowing the risk) set oci.runtimes.${handler}.min_version`,
  };
}

/**
 * Says each verdict once at start: a refused default handler stops berthd
 * (the error names the runtime, why and the key), another refused handler is
 * logged and its pods get FAILED_PRECONDITION, a tolerated distribution build
 * is logged at error level.
 */
export function judgeOciRuntimesAtStart(config: BerthConfig, host: { ociRuntimeVersions?: Record<string, RuntimeVersionVerdict> }, log: RuntimeLog): void {
  for (const v of Object.values(host.ociRuntimeVersions ?? {})) {
    const fields = { handler: v.handler, version: v.versionText, minimum: v.minimum || 'advisories', advisories: v.openAdvisories, fastPaths: v.fastPaths };
    if (v.verdict === 'refused') {
      if (v.handler === config.oci.default_runtime) throw new Error(`runtime: ${v.message}`);
      log.error(fields, `runtime refused: ${v.message}; pods asking for handler "${v.handler}" are refused`);
    } else if (v.verdict === 'warn' || v.verdict === 'unknown') {
      log.error(fields, `runtime version WARNING: ${v.message}`);
    } else {
      log.info(fields, `runtime ${v.message}${v.kind === 'runc' ? (v.fastPaths ? ' (runc fast paths on: a tested series)' : ' (runc fast paths off: not a tested series)') : ''}`);
    }
  }
}
