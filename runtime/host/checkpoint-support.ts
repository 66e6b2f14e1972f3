// Whether criu can checkpoint on this host, asked once at start with
// `criu check` (criu's own test of the kernel features it needs), and why not
// in criu's words. The binary is oci.criu (runc is handed it as --criu).
// Debian 12's criu 3.17 cannot start on x86 Linux 6.13 and later: the kernel
// split the vDSO data mapping into [vvar] and [vvar_vclock], and criu 3.17's
// kerndat refuses the layout ("vdso: Unexpected rt vDSO area bounds") before
// any checkpoint or restore; criu 4.1 knows the new layout.
import { execFile, spawnSync } from 'node:child_process';
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

interface Run {
  error?: Error;
  status: number | null;
  output: string;
}

function judge(path: string, versionRun: Run, check: Run, kernel: string): CheckpointSupport {
  const version = /Version:\s*(\S+)/.exec(versionRun.output)?.[1] ?? 'unknown';
  if (check.error) return { criu: { supported: false, path, version, reason: `criu check could not run: ${check.error.message}` } };
  if (check.status !== 0) {
    return { criu: { supported: false, path, version, reason: `criu ${version} (${path}) check failed on kernel ${kernel}:\n${criuErrorExcerpt(check.output)}` } };
  }
  return { criu: { supported: true, path, version } };
}

function missing(configured: string): CheckpointSupport {
  return { criu: { supported: false, reason: `criu (${configured}) is not installed or not executable (Debian package criu, or set oci.criu)` } };
}

/** At start, before berthd serves. path: the criu binary found (undefined: none); kernel: the release, for the message. */
export function probeCheckpointSupport(path: string | undefined, kernel: string, configured = 'criu'): CheckpointSupport {
  if (!path) return missing(configured);
  const sync = (args: string[], timeout: number): Run => {
    const r = spawnSync(path, args, { encoding: 'utf8', timeout });
    return { error: r.error, status: r.status, output: `${r.stdout ?? ''}\n${r.stderr ?? ''}` };
  };
  return judge(path, sync(['--version'], 5000), sync(['check'], 20_000), kernel);
}

/** The same, without blocking the event loop (berthd doctor, which also runs while berthd serves). */
export async function probeCheckpointSupportAsync(path: string | undefined, kernel: string, configured = 'criu'): Promise<CheckpointSupport> {
  if (!path) return missing(configured);
  const run = (args: string[], timeout: number): Promise<Run> =>
    new Promise((resolve) => {
      execFile(path, args, { encoding: 'utf8', timeout }, (err, stdout, stderr) => {
        const exitCode = err && typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : err ? null : 0;
        const spawnError = err && typeof (err as NodeJS.ErrnoException).code === 'string' ? err : undefined;
        resolve({ error: spawnError, status: exitCode, output: `${stdout ?? ''}\n${stderr ?? ''}` });
      });
    });
  return judge(path, await run(['--version'], 5000), await run(['check'], 20_000), kernel);
}
