// Whether criu can checkpoint on this host, asked with `criu check` (criu's
// own test of the kernel features it needs), and why not in criu's words. The
// binary is oci.criu (runc is handed it as --criu). Both runs go through the
// host probe cache: a restart on the same kernel with the same criu runs
// neither. Debian 12's criu 3.17 cannot start on x86 Linux 6.13 and later: the
// kernel split the vDSO data mapping into [vvar] and [vvar_vclock], and criu
// 3.17's kerndat refuses the layout ("vdso: Unexpected rt vDSO area bounds")
// before any checkpoint or restore; criu 4.1 knows the new layout.
import { type CommandOutcome, HostProbeCache } from './host-probe-cache';
import type { FeatureSupport } from './mount-features';

export interface CheckpointSupport {
  criu: FeatureSupport & { path?: string; version?: string };
}

/** criu's error lines, at most `max`: what a person needs to see of its log. */
export function criuErrorExcerpt(log: string, max = 6): string {
  const lines = log.split('\n').map((l) => l.trim());
  const errors = lines.filter((l) => /\bError\b|\bErr\b|^criu: /.test(l));
  return (errors.length > 0 ? errors : lines.filter(Boolean)).slice(-max).join('\n');
}

const output = (run: CommandOutcome): string => `${run.stdout}\n${run.stderr}`;

function judge(path: string, versionRun: CommandOutcome, check: CommandOutcome, kernel: string): CheckpointSupport {
  const version = /Version:\s*(\S+)/.exec(output(versionRun))?.[1] ?? 'unknown';
  if (check.error) return { criu: { supported: false, path, version, reason: `criu check could not run: ${check.error}` } };
  if (check.status !== 0) {
    return { criu: { supported: false, path, version, reason: `criu ${version} (${path}) check failed on kernel ${kernel}:\n${criuErrorExcerpt(output(check))}` } };
  }
  return { criu: { supported: true, path, version } };
}

function missing(configured: string): CheckpointSupport {
  return { criu: { supported: false, reason: `criu (${configured}) is not installed or not executable (Debian package criu, or set oci.criu)` } };
}

/** path: the criu binary found (undefined: none); kernel: the release (the message, and the cache's scope). */
export async function probeCheckpointSupport(path: string | undefined, kernel: string, configured = 'criu', probes = HostProbeCache.inMemory()): Promise<CheckpointSupport> {
  if (!path) return missing(configured);
  const [versionRun, check] = await Promise.all([
    probes.run(path, ['--version'], { timeoutMs: 5000 }),
    probes.run(path, ['check'], { timeoutMs: 20_000, scope: kernel }),
  ]);
  return judge(path, versionRun, check, kernel);
}
