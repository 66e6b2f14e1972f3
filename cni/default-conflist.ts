// berth's own network, for a node with no CNI at all: a bridge with host-local
// IPAM, portmap for hostPorts, and loopback (cniVersion 1.0.0: the newest
// Debian's plugins, 1.1.x, speak it). It is only a fallback: its file sorts
// after any cluster's (99-), it is selected only while no other config parses
// (network-config-dir.ts), and it carries BERTH_OWNED_KEY so that berthd
// rewrites (with the kubelet's pod CIDR) or renames only a file it wrote.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { NetworkConfigList } from './cni-types';
import { BERTH_OWNED_KEY, isBerthOwned, networkConfigNames, readNetworkConfig } from './network-config-dir';

export const DEFAULT_CONFLIST_FILE = '99-berth-default.conflist';

export interface DefaultNetworkOptions {
  name: string;
  bridge: string;
  /** One subnet, or a comma-separated list (the kubelet's dual-stack pod CIDR). */
  subnet: string;
  /** host-local's state dir; "" keeps the plugin's default (/var/lib/cni/networks). */
  ipamDataDir?: string;
}

/** The network itself, as berthd has always written it (the shape a file must have to be proven berth's). */
export function defaultConflist(options: DefaultNetworkOptions): NetworkConfigList {
  const subnets = options.subnet.split(',').map((s) => s.trim()).filter(Boolean);
  const ipam: Record<string, unknown> = {
    type: 'host-local',
    ranges: subnets.map((subnet) => [{ subnet }]),
    routes: [...new Set(subnets.map((s) => (s.includes(':') ? '::/0' : '0.0.0.0/0')))].map((dst) => ({ dst })),
  };
  if (options.ipamDataDir) ipam.dataDir = options.ipamDataDir;
  return {
    cniVersion: '1.0.0',
    name: options.name,
    plugins: [
      { type: 'bridge', bridge: options.bridge, isGateway: true, ipMasq: true, hairpinMode: true, ipam },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ],
  };
}

/**
 * The file berthd writes: the network with berth's ownership mark. The bridge is berth's own, so when the
 * pod CIDR replaces its subnet (only once no pod uses the old one) its old gateway address may give way.
 */
export function ownedDefaultConflist(options: DefaultNetworkOptions): NetworkConfigList {
  const list = defaultConflist(options);
  list.plugins[0] = { ...list.plugins[0], forceAddress: true };
  return { [BERTH_OWNED_KEY]: 'berthd', ...list };
}

async function writeAtomically(path: string, list: NetworkConfigList): Promise<void> {
  const tmp = `${path}.tmp`;
  await fsp.writeFile(tmp, `${JSON.stringify(list, null, 2)}\n`, { mode: 0o644 });
  await fsp.rename(tmp, path);
}

/**
 * A `10-<name>.conflist` that is exactly the network berthd wrote before it marked its files
 * (any name, bridge and subnet, nothing added or changed): proof enough that berthd wrote it.
 */
export function isLegacyBerthConflist(fileName: string, list: NetworkConfigList): boolean {
  if (fileName !== `10-${list.name}.conflist` || list.plugins.length !== 3) return false;
  const bridge = list.plugins[0];
  const ranges = (bridge.ipam as { ranges?: { subnet?: unknown }[][] } | undefined)?.ranges;
  if (typeof bridge.bridge !== 'string' || !Array.isArray(ranges) || ranges.length !== 1 || typeof ranges[0]?.[0]?.subnet !== 'string') return false;
  const dataDir = (bridge.ipam as { dataDir?: unknown }).dataDir;
  const rebuilt = defaultConflist({
    name: list.name,
    bridge: bridge.bridge,
    subnet: ranges[0][0].subnet,
    ipamDataDir: typeof dataDir === 'string' ? dataDir : undefined,
  });
  return isDeepStrictEqual(JSON.parse(JSON.stringify(list)), rebuilt);
}

export interface DefaultNetworkOutcome {
  /** written: none existed; migrated: an old 10-<name>.conflist of berthd's became the fallback; present: kept as it is. */
  action: 'written' | 'migrated' | 'present' | 'not-needed';
  path?: string;
  /** The old file renamed away, for the log. */
  migratedFrom?: string;
}

/**
 * At start: renames berthd's old 10-<name>.conflist (which hid the cluster's config) to the fallback name,
 * and writes the fallback when `write` and the dir has no config file at all. A fallback already present
 * is kept (it may carry the kubelet's pod CIDR).
 */
export async function ensureDefaultNetwork(confDir: string, options: DefaultNetworkOptions, write: boolean): Promise<DefaultNetworkOutcome> {
  await fsp.mkdir(confDir, { recursive: true, mode: 0o755 });
  const path = join(confDir, DEFAULT_CONFLIST_FILE);
  const names = networkConfigNames(await fsp.readdir(confDir));
  let ownedPresent = false;
  let others = 0;
  let legacy: string | undefined;
  for (const name of names) {
    let list: NetworkConfigList | undefined;
    try {
      list = await readNetworkConfig(join(confDir, name));
    } catch {
      list = undefined;
    }
    if (name === DEFAULT_CONFLIST_FILE && list && isBerthOwned(list)) ownedPresent = true;
    else if (list && !legacy && isLegacyBerthConflist(name, list)) legacy = name;
    else others++;
  }
  if (legacy) {
    if (!ownedPresent) await writeAtomically(path, ownedDefaultConflist(options));
    await fsp.rm(join(confDir, legacy), { force: true });
    return { action: 'migrated', path, migratedFrom: join(confDir, legacy) };
  }
  if (ownedPresent) return { action: 'present', path };
  if (!write || others > 0) return { action: 'not-needed' };
  await writeAtomically(path, ownedDefaultConflist(options));
  return { action: 'written', path };
}

/**
 * Gives berthd's fallback network the node's pod CIDR (from UpdateRuntimeConfig). Only berthd's own file
 * is ever rewritten, and not while pods are attached to it with the old subnet (`fallbackInUse`): a bridge
 * has one IPv4 gateway, and theirs must stay. Pods attached before keep their addresses (DEL replays the
 * config cached at ADD).
 */
export async function applyPodCidrToDefault(
  confDir: string,
  options: DefaultNetworkOptions,
  podCidr: string,
  fallbackInUse = false,
): Promise<'rewritten' | 'unchanged' | 'deferred' | 'no-fallback'> {
  const path = join(confDir, DEFAULT_CONFLIST_FILE);
  let current: NetworkConfigList;
  try {
    current = await readNetworkConfig(path);
  } catch {
    return 'no-fallback';
  }
  if (!isBerthOwned(current)) return 'no-fallback';
  if (podCidr.trim() === '') return 'unchanged';
  const wanted = ownedDefaultConflist({ ...options, subnet: podCidr });
  if (isDeepStrictEqual(JSON.parse(JSON.stringify(current)), wanted)) return 'unchanged';
  if (fallbackInUse) return 'deferred';
  await writeAtomically(path, wanted);
  return 'rewritten';
}
