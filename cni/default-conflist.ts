// The network berthd writes when the conf dir has none (and config allows):
// a bridge with host-local IPAM, portmap for hostPorts, and loopback.
// cniVersion 1.0.0: the newest Debian's plugins (1.1.x) speak.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetworkConfigList } from './cni-types';
import { listNetworkConfigFiles } from './network-config-dir';

export interface DefaultNetworkOptions {
  name: string;
  bridge: string;
  subnet: string;
  /** host-local's state dir; "" keeps the plugin's default (/var/lib/cni/networks). */
  ipamDataDir?: string;
}

export function defaultConflist(options: DefaultNetworkOptions): NetworkConfigList {
  const ipam: Record<string, unknown> = {
    type: 'host-local',
    ranges: [[{ subnet: options.subnet }]],
    routes: [{ dst: '0.0.0.0/0' }],
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

/** Writes the default conflist when `confDir` has no config; returns its path, or undefined when one existed. */
export function writeDefaultConflistIfMissing(confDir: string, options: DefaultNetworkOptions): string | undefined {
  if (listNetworkConfigFiles(confDir).length > 0) return undefined;
  mkdirSync(confDir, { recursive: true, mode: 0o755 });
  const path = join(confDir, `10-${options.name}.conflist`);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(defaultConflist(options), null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
  return path;
}
