// A container's device nodes and its device cgroup rules: the requested
// devices (a directory means every device below it); for a privileged
// container every host device, all allowed.
import { lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { invalidArgument } from '../errors';
import type { OciDeviceRule, OciLinuxDevice } from './oci-spec-types';

/** Not device nodes to copy: the runtime mounts or makes these itself. */
const SKIPPED_UNDER_DEV = new Set(['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/console', '/dev/ptmx', '/dev/fd', '/dev/core']);

export interface SpecDevices {
  devices: OciLinuxDevice[];
  rules: OciDeviceRule[];
}

/** The request's devices were validated (container-request-validation.ts); what is checked here is the host's side. */
export function specDevices(config: ContainerConfig__Output, privileged: boolean): SpecDevices {
  const devices: OciLinuxDevice[] = [];
  const rules: OciDeviceRule[] = [{ allow: false, access: 'rwm' }];
  if (privileged) {
    rules.push({ allow: true, access: 'rwm' });
    for (const p of hostDevicesUnder('/dev')) {
      try {
        const d = deviceOf(p, p);
        if (d) devices.push(d);
      } catch {
        // vanished
      }
    }
  }
  for (const [i, d] of (config.devices ?? []).entries()) {
    const field = `config.devices[${i}]`;
    const containerPath = d.container_path || d.host_path;
    const permissions = d.permissions || 'rwm';
    let st;
    try {
      st = statSync(d.host_path);
    } catch {
      throw invalidArgument(`${field}.host_path: device "${d.host_path}" does not exist`);
    }
    const paths = st.isDirectory() ? hostDevicesUnder(d.host_path).map((p) => [p, join(containerPath, p.slice(d.host_path.length))]) : [[d.host_path, containerPath]];
    for (const [hostPath, inContainer] of paths) {
      const dev = deviceOf(hostPath, inContainer);
      if (!dev) {
        if (!st.isDirectory()) throw invalidArgument(`${field}.host_path: "${d.host_path}" is not a device`);
        continue;
      }
      devices.push(dev);
      if (!privileged) rules.push({ allow: true, type: dev.type, major: dev.major, minor: dev.minor, access: permissions });
    }
  }
  return { devices, rules };
}

function majorMinor(rdev: number): { major: number; minor: number } {
  return { major: Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn), minor: Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn) };
}

function deviceOf(hostPath: string, containerPath: string): OciLinuxDevice | undefined {
  const st = statSync(hostPath);
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) return undefined;
  const { major, minor } = majorMinor(st.rdev);
  return { path: containerPath, type, major, minor, fileMode: st.mode & 0o777, uid: st.uid, gid: st.gid };
}

function hostDevicesUnder(dir: string, depth = 0): string[] {
  const out: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (SKIPPED_UNDER_DEV.has(p)) continue;
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory() && depth < 3) out.push(...hostDevicesUnder(p, depth + 1));
    else if (st.isCharacterDevice() || st.isBlockDevice()) out.push(p);
  }
  return out;
}
