// The commands of berthd that do not serve: `doctor` and `version`.
import type { BerthConfig } from '../runtime/config';
import { type BinaryProbe, probeBinary } from '../runtime/host/binaries';
import { renderDoctorText, runDoctor } from '../runtime/host/doctor/doctor';
import { buildInfo } from './build-info';
import { CRI_API_VERSION } from './runtime-info-rpcs';

/** Prints doctor's findings; the exit code is 0 all ok, 1 warnings, 2 failures. */
export async function doctorCommand(config: BerthConfig, options: { json: boolean; hostRoot: string }): Promise<number> {
  const report = await runDoctor(config, { hostRoot: options.hostRoot, phase: 'cli' });
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderDoctorText(report));
  return report.exitCode;
}

export interface VersionReport {
  berth: { version: string; commit: string; criApi: string };
  node: string;
  binaries: { name: string; path?: string; version?: string; versionText?: string; problem?: string }[];
}

function describe(probe: BinaryProbe): VersionReport['binaries'][number] {
  if (!probe.found) return { name: probe.name, problem: probe.problem };
  if (!probe.usable) return { name: probe.name, path: probe.path, problem: probe.problem };
  return { name: probe.name, path: probe.path, version: probe.version, versionText: probe.versionText };
}

export async function versionReport(config: BerthConfig): Promise<VersionReport> {
  const info = buildInfo();
  const probes = await Promise.all([
    probeBinary('conmon', config.oci.conmon),
    ...Object.entries(config.oci.runtimes).map(([handler, rt]) => probeBinary(handler, rt.path)),
  ]);
  return {
    berth: { version: info.version, commit: info.commit, criApi: CRI_API_VERSION },
    node: process.version,
    binaries: probes.map(describe),
  };
}

export async function versionCommand(config: BerthConfig, options: { json: boolean }): Promise<number> {
  const report = await versionReport(config);
  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const commit = `${report.berth.commit.slice(0, 12)}${report.berth.commit.endsWith('-dirty') ? '-dirty' : ''}`;
  const rows: [string, string][] = [
    ['node', report.node],
    ...report.binaries.map((b): [string, string] => [b.name, b.version !== undefined ? `${b.version || b.versionText} (${b.path})` : `not usable: ${b.problem}`]),
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  process.stdout.write(`berthd ${report.berth.version} (commit ${commit}, CRI ${report.berth.criApi})\n`);
  process.stdout.write(rows.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`).join('\n') + '\n');
  return 0;
}
