// A pod's interface counters, read from /proc/net/dev as its network namespace
// sees it. Cheapest first: /proc/<pid>/net/dev of a process living in the
// pod's namespace (checked to be in it: a pid may have been reused), a plain
// asynchronous read; only a pod with no such process costs a thread that
// joins the pinned namespace (native addon).
import { readFile, readlink, stat } from 'node:fs/promises';
import { loadNative } from '../../native';
import { readControlFile } from '../cgroups/cgroup-usage';

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

/** The namespace a pinned file or /proc/<pid>/ns/net names, as "net:[inode]". */
async function pinnedNamespace(netnsPath: string): Promise<string | undefined> {
  try {
    return `net:[${(await stat(netnsPath)).ino}]`;
  } catch {
    return undefined;
  }
}

async function namespaceOf(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** /proc/<pid>/net/dev, if `pid` is (still) in `namespace` before and after the read. */
async function readThroughProcess(pid: number, namespace: string): Promise<InterfaceCounters[] | undefined> {
  if (pid <= 0 || (await namespaceOf(pid)) !== namespace) return undefined;
  const text = await readControlFile(`/proc/${pid}/net/dev`);
  if (text === undefined || (await namespaceOf(pid)) !== namespace) return undefined;
  return parseNetDev(text);
}

/**
 * The interfaces of the pod's pinned namespace `netnsPath`, through one of
 * `pids` (the pod's container processes) when one is in it, else from a
 * thread that joins it. Without a pinned namespace, what the first of `pids`
 * that answers sees.
 */
export async function readNetnsInterfaces(netnsPath: string, pids: number[] = []): Promise<InterfaceCounters[] | undefined> {
  if (netnsPath) {
    const namespace = await pinnedNamespace(netnsPath);
    if (namespace) {
      for (const pid of pids) {
        const interfaces = await readThroughProcess(pid, namespace);
        if (interfaces) return interfaces;
      }
      try {
        return parseNetDev(await loadNative().readFileInNetns(netnsPath, '/proc/thread-self/net/dev'));
      } catch {
        // pinned namespace gone or addon unavailable: try a process in it
      }
    }
  }
  for (const pid of pids) {
    if (pid <= 0) continue;
    try {
      return parseNetDev(await readFile(`/proc/${pid}/net/dev`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}
