// Finding the pod network: the kubelet's contract is "the first CNI config file
// in the conf dir, in lexical order". Files that do not parse are skipped (and
// named, for NetworkReady's message), as CRI-O does. berth's own fallback
// network is chosen only when no other config parses: it gives way to any
// cluster's config whatever that file is called.
import { promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import type { NetworkConfigList } from './cni-types';
import { NetworkConfigError, parseNetworkConfig } from './network-config';

const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'];
/** A CNI config is a few hundred bytes; anything this large is not one. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/** The top-level key that marks a conflist as written by berthd (so berthd may rewrite, rename or ignore it). */
export const BERTH_OWNED_KEY = 'io.berth.owned-by';

export function isBerthOwned(list: NetworkConfigList): boolean {
  return list[BERTH_OWNED_KEY] === 'berthd';
}

/** Names of the CNI config files in a directory listing, first one first. */
export function networkConfigNames(names: readonly string[]): string[] {
  return names.filter((name) => CONFIG_EXTENSIONS.some((ext) => name.endsWith(ext)) && !name.startsWith('.')).sort();
}

export interface SelectedNetwork {
  path: string;
  list: NetworkConfigList;
  /** berthd's own fallback network (used only while nothing else is configured). */
  berthOwned: boolean;
}

/** What the conf dir offers now. */
export interface NetworkSelection {
  confDir: string;
  network?: SelectedNetwork;
  /** Files skipped because they cannot be read or parsed, with why ("05-x.conf: not JSON: ..."). */
  skipped: string[];
}

/** One config file read and parsed; NetworkConfigError naming the file when it cannot be. */
export async function readNetworkConfig(path: string): Promise<NetworkConfigList> {
  let text: string;
  try {
    const handle = await fsp.open(path, 'r');
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new NetworkConfigError(`${basename(path)}: not a regular file`);
      if (stat.size > MAX_CONFIG_BYTES) throw new NetworkConfigError(`${basename(path)}: larger than ${MAX_CONFIG_BYTES} bytes`);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof NetworkConfigError) throw err;
    throw new NetworkConfigError(`${basename(path)}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseNetworkConfig(basename(path), text);
}

/**
 * The network ADD would use now: the first config (lexical order) that parses and is not berth's own;
 * berth's own only when no other parses. Reads no further than it has to.
 */
export async function selectNetwork(confDir: string): Promise<NetworkSelection> {
  const selection: NetworkSelection = { confDir, skipped: [] };
  let names: string[];
  try {
    names = networkConfigNames(await fsp.readdir(confDir));
  } catch {
    return selection;
  }
  let fallback: SelectedNetwork | undefined;
  for (const name of names) {
    const path = join(confDir, name);
    let list: NetworkConfigList;
    try {
      list = await readNetworkConfig(path);
    } catch (err) {
      // Removed between readdir and open: not a problem worth reporting.
      if (err instanceof NetworkConfigError && /cannot read: ENOENT/.test(err.message)) continue;
      selection.skipped.push((err as Error).message);
      continue;
    }
    if (isBerthOwned(list)) {
      fallback ??= { path, list, berthOwned: true };
      continue;
    }
    selection.network = { path, list, berthOwned: false };
    return selection;
  }
  if (fallback) selection.network = fallback;
  return selection;
}

/** Why there is no network, in one line for NetworkReady's message and ADD's error. */
export function noNetworkMessage(selection: NetworkSelection): string {
  const skipped = selection.skipped.length > 0 ? ` (skipped: ${selection.skipped.join('; ')})` : '';
  return `no CNI network config found in ${selection.confDir}${skipped}`;
}
