// Whether criu can checkpoint on this host, asked once at start with
// `criu check` (criu's own test of the kernel features it needs), and why not
// in criu's words. Debian 12's criu 3.17 cannot start on x86 Linux 6.13 and
// later: the kernel split the vDSO data mapping into [vvar] and [vvar_vclock],
// and criu 3.17's kerndat refuses the layout ("vdso: Unexpected rt vDSO area
// bounds") before any checkpoint or restore; criu 4.1 knows the new layout.
import { spawnSync } from 'node:child_process';
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

/** path: the criu binary found on PATH (undefined: none); kernel: the release, for the message. */
export function probeCheckpointSupport(path: string | undefined, kernel: string): CheckpointSupport {
  if (!path) return { criu: { supported: false, reason: 'criu is not installed (Debian package criu)' } };
  const versionRun = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 5000 });
  const version = /Version:\s*(\S+)/.exec(versionRun.stdout ?? '')?.[1] ?? 'unknown';
  const check = spawnSync(path, ['check'], { encoding: 'utf8', timeout: 20_000 });
  if (check.error) return { criu: { supported: false, path, version, reason: `criu check could not run: ${check.error.message}` } };
  if (check.status !== 0) {
    const excerpt = criuErrorExcerpt(`${check.stdout ?? ''}\n${check.stderr ?? ''}`);
    return { criu: { supported: false, path, version, reason: `criu ${version} check failed on kernel ${kernel}:\n${excerpt}` } };
  }
  return { criu: { supported: true, path, version } };
}
