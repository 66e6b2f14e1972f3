// Prints the ratios of one benchmark run (every scenario JSON in
// bench/results/<run id>/) and whether each target of the issue was met.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resultsDir, type ScenarioResult } from './support/samples';

function ratio(v: number | null): string {
  return v === null ? '-' : `${v.toFixed(2)}x`;
}

const dir = process.argv[2] ?? resultsDir();
if (!existsSync(dir)) {
  console.error(`summary: no results in ${dir}`);
  process.exit(1);
}
const results = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as ScenarioResult);

console.log(`\n== summary: berth / containerd (below 1 = berth faster) — ${dir} ==`);
const ms = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(1));
const lines: string[][] = [['scenario', 'operation', 'berth p50 ms', 'containerd p50 ms', 'ratio p50', 'ratio p95', 'ratio p99', 'ratio mean']];
for (const r of results) {
  for (const row of r.rows) {
    // Results written before p99 was kept have no ratioP99.
    lines.push([r.scenario, row.operation, ms(row.berth?.p50), ms(row.containerd?.p50), ratio(row.ratioP50), ratio(row.ratioP95), ratio(row.ratioP99 ?? null), ratio(row.ratioMean)]);
  }
}
const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
for (const l of lines) console.log(l.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
console.log('');
let missed = 0;
let measured = 0;
for (const r of results) {
  for (const t of r.targets) {
    const verdict = t.met === null ? 'NOT MEASURED' : t.met ? 'met' : 'MISSED';
    if (t.met === false) missed++;
    if (t.met !== null) measured++;
    console.log(`target ${r.scenario}: ${t.operation} p50 <= ${t.maxRatio}x containerd: ${ratio(t.ratioP50)} ${verdict}`);
  }
  for (const n of r.notes) console.log(`note ${r.scenario}: ${n}`);
  console.log(`load ${r.scenario}: 1-min load average ${Number(r.host.loadavg1AtStart).toFixed(2)} at start, ${Number(r.host.loadavg1AtEnd).toFixed(2)} at end`);
}
// Missing a target is a finding, not a harness failure: the exit code stays 0.
console.log(measured === 0 ? 'no target measured (one runtime only?)' : `${measured - missed} of ${measured} measured target(s) met`);
