// The pod network each runtime gets: the same plugin chain (bridge +
// host-local + portmap) on its own bridge and subnet, so the CNI work per pod
// is identical and the two runtimes never share addresses.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CNI_BIN_DIR = '/usr/lib/cni';

export interface BridgeNetwork {
  name: string;
  bridge: string;
  subnet: string;
  /** host-local's lease directory (kept inside the runtime's temp dir). */
  ipamDir: string;
}

/** Writes `<confDir>/10-<name>.conflist`; returns its path. */
export function writeBridgeConflist(confDir: string, net: BridgeNetwork): string {
  mkdirSync(confDir, { recursive: true });
  mkdirSync(net.ipamDir, { recursive: true });
  const conflist = {
    cniVersion: '0.4.0',
    name: net.name,
    plugins: [
      {
        type: 'bridge',
        bridge: net.bridge,
        // No gateway and no masquerade: pods of the benchmark never talk to
        // anything, and the host's ip_forward and NAT rules stay untouched.
        isGateway: false,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: net.ipamDir,
          ranges: [[{ subnet: net.subnet }]],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  const file = join(confDir, `10-${net.name}.conflist`);
  writeFileSync(file, `${JSON.stringify(conflist, null, 2)}\n`);
  return file;
}
