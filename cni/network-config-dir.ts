// Finding the pod network: the kubelet's contract is "the first CNI config file
// in the conf dir, in lexical order".
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'];

/** Paths of the CNI config files in `confDir`, first one first; [] when the dir is missing. */
export function listNetworkConfigFiles(confDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(confDir);
  } catch {
    return [];
  }
  return names
    .filter((name) => CONFIG_EXTENSIONS.some((ext) => name.endsWith(ext)))
    .sort()
    .map((name) => join(confDir, name));
}
