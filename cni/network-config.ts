// Parsing one CNI config file: a .conflist as is, a single-plugin .conf/.json
// wrapped as a list of one. Which file is the pod network: network-config-dir.ts.
import type { NetworkConfigList, PluginConfig } from './cni-types';

export class NetworkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkConfigError';
  }
}

/** Parses one config file's text; throws NetworkConfigError naming the file and what is wrong. */
export function parseNetworkConfig(path: string, text: string): NetworkConfigList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new NetworkConfigError(`${path}: not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new NetworkConfigError(`${path}: not a JSON object`);
  const obj = raw as Record<string, unknown>;
  const isList = path.endsWith('.conflist') || Array.isArray(obj.plugins);
  let list: NetworkConfigList;
  if (isList) {
    if (!Array.isArray(obj.plugins) || obj.plugins.length === 0) throw new NetworkConfigError(`${path}: "plugins" must be a non-empty list`);
    list = obj as unknown as NetworkConfigList;
  } else {
    const { cniVersion, name, ...plugin } = obj;
    list = { cniVersion: cniVersion as string, name: name as string, plugins: [plugin as PluginConfig] };
  }
  if (typeof list.name !== 'string' || list.name === '') throw new NetworkConfigError(`${path}: "name" is missing`);
  if (typeof list.cniVersion !== 'string' || !/^\d+\.\d+\.\d+$/.test(list.cniVersion)) {
    throw new NetworkConfigError(`${path}: "cniVersion" must be a version such as 1.0.0`);
  }
  list.plugins.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.type !== 'string' || p.type === '') {
      throw new NetworkConfigError(`${path}: plugins[${i}].type is missing`);
    }
  });
  return list;
}

/** -1, 0, 1 comparing dotted versions ("0.4.0" < "1.0.0" < "1.1.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}
