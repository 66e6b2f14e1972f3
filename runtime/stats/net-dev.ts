// A pod's interface counters, read from /proc/net/dev as its network namespace
// sees it: from a thread that joins the pinned namespace (native addon), or,
// when that fails, through /proc/<pid>/net/dev of a process living in it.
import { readFile } from 'node:fs/promises';
import { loadNative } from '../../native';

export interface InterfaceCounters {
  name: string;
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/** Parses /proc/net/dev: two header lines, then "name: 8 receive fields 8 transmit fields". */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const fields = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (!name || fields.length < 16 || fields.some((f) => !Number.isFinite(f))) continue;
    out.push({
      name,
      rxBytes: fields[0],
      rxPackets: fields[1],
      rxErrors: fields[2],
      rxDropped: fields[3],
      txBytes: fields[8],
      txPackets: fields[9],
      txErrors: fields[10],
      txDropped: fields[11],
    });
  }
  return out;
}

/** The interface the kubelet reports as the pod's: eth0 as CNI names it, else the first that is not loopback. */
export function defaultInterface(interfaces: InterfaceCounters[]): InterfaceCounters | undefined {
  return interfaces.find((i) => i.name === 'eth0') ?? interfaces.find((i) => i.name !== 'lo');
}

export async function readNetnsInterfaces(netnsPath: string, fallbackPids: number[] = []): Promise<InterfaceCounters[] | undefined> {
  if (netnsPath) {
    try {
      return parseNetDev(await loadNative().readFileInNetns(netnsPath, '/proc/thread-self/net/dev'));
    } catch {
      // pinned namespace gone or addon unavailable: try a process in it
    }
  }
  for (const pid of fallbackPids) {
    if (pid <= 0) continue;
    try {
      return parseNetDev(await readFile(`/proc/${pid}/net/dev`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}
