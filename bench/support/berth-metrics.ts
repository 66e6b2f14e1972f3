// berthd's own latency histograms (OCI runtime/conmon calls, CNI calls),
// scraped from its Prometheus endpoint before and after a scenario, so a
// report can say where berth's time went beside the CRI-level ratios.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Ports the process listens on over TCP (IPv4 or IPv6). */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local rem st ... inode(9); state 0A = LISTEN
      if (cols.length > 9 && cols[3] === '0A' && inodes.has(cols[9])) ports.push(parseInt(cols[1].split(':')[1], 16));
    }
  }
  return ports;
}

/** The URL of berthd's /metrics (the one listening port that serves it). */
export async function findMetricsUrl(pid: number): Promise<string | undefined> {
  for (const port of listeningPorts(pid)) {
    const url = `http://127.0.0.1:${port}/metrics`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.ok && body.includes('# TYPE')) return url;
    } catch {
      // not the metrics port
    }
  }
  return undefined;
}

/** sum and count of each histogram series whose name starts with one of `prefixes`, keyed "name{labels}". */
export type HistogramTotals = Map<string, { sum: number; count: number }>;

export async function scrapeHistograms(url: string, prefixes: string[]): Promise<HistogramTotals> {
  const text = await (await fetch(url, { signal: AbortSignal.timeout(5000) })).text();
  const out: HistogramTotals = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)_(sum|count)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
    if (!m || !prefixes.some((p) => m[1].startsWith(p))) continue;
    const key = `${m[1]}${m[3] ?? ''}`;
    const entry = out.get(key) ?? { sum: 0, count: 0 };
    if (m[2] === 'sum') entry.sum = Number(m[4]);
    else entry.count = Number(m[4]);
    out.set(key, entry);
  }
  return out;
}

/** "operation runtime: mean X ms over N calls" lines for what happened between two scrapes. */
export function describeDelta(before: HistogramTotals, after: HistogramTotals): string[] {
  const lines: string[] = [];
  for (const [key, a] of after) {
    const b = before.get(key) ?? { sum: 0, count: 0 };
    const count = a.count - b.count;
    if (count <= 0) continue;
    const meanMs = ((a.sum - b.sum) / count) * 1000;
    lines.push(`${key}: mean ${meanMs.toFixed(1)} ms over ${count} calls`);
  }
  return lines.sort();
}

export interface EventLoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * berthd's event-loop delay since the previous scrape (berth_event_loop_delay_seconds;
 * scraping starts a new window). undefined when berthd does not export it.
 */
export async function scrapeEventLoopDelay(url: string): Promise<EventLoopDelay | undefined> {
  const text = await (await fetch(url, { signal: AbortSignal.timeout(5000) })).text();
  const quantile = (q: string): number | undefined => {
    const m = new RegExp(`^berth_event_loop_delay_seconds\\{quantile="${q.replace('.', '\\.')}"\\} ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) * 1000 : undefined;
  };
  const [p50Ms, p99Ms, maxMs] = [quantile('0.5'), quantile('0.99'), quantile('1')];
  return p50Ms === undefined || p99Ms === undefined || maxMs === undefined ? undefined : { p50Ms, p99Ms, maxMs };
}
