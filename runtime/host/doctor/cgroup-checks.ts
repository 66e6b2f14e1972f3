// Cgroups: which hierarchy the host mounts (v1, v2, hybrid), and whether
// berth's cgroup driver is the one the kubelet uses.
import type { CheckResult, DoctorContext } from './doctor-types';
import { fail, ok, warn } from './doctor-types';

export const KUBELET_CONFIG = '/var/lib/kubelet/config.yaml';

export interface CgroupLayout {
  mode: 'v1' | 'v2' | 'hybrid' | 'none';
  unifiedMount: string;
  v2Controllers: string[];
}

export async function cgroupLayout(ctx: DoctorContext): Promise<CgroupLayout> {
  const mounts = (await ctx.host.mounts()).filter((m) => m.mountPoint === '/sys/fs/cgroup' || m.mountPoint.startsWith('/sys/fs/cgroup/'));
  const top = mounts.filter((m) => m.mountPoint === '/sys/fs/cgroup').pop();
  const controllers = async (dir: string): Promise<string[]> => ((await ctx.host.value(`${dir}/cgroup.controllers`)) ?? '').split(/\s+/).filter(Boolean);
  if (top?.fsType === 'cgroup2') return { mode: 'v2', unifiedMount: top.mountPoint, v2Controllers: await controllers(top.mountPoint) };
  const v1 = mounts.some((m) => m.fsType === 'cgroup');
  const unified = mounts.find((m) => m.fsType === 'cgroup2');
  if (!v1) return { mode: 'none', unifiedMount: '', v2Controllers: [] };
  if (!unified) return { mode: 'v1', unifiedMount: '', v2Controllers: [] };
  return { mode: 'hybrid', unifiedMount: unified.mountPoint, v2Controllers: await controllers(unified.mountPoint) };
}

const UNIFIED_FIX = 'boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all: add them to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub && reboot';

export async function checkCgroupMode(ctx: DoctorContext): Promise<CheckResult[]> {
  const layout = await cgroupLayout(ctx);
  switch (layout.mode) {
    case 'v2':
      return [ok('cgroup.mode', `cgroup v2 at ${layout.unifiedMount} (controllers: ${layout.v2Controllers.join(' ') || 'none enabled'})`)];
    case 'hybrid':
      return [warn('cgroup.mode', `hybrid cgroups: v1 controllers with cgroup2 at ${layout.unifiedMount}${layout.v2Controllers.length ? ` (enabling ${layout.v2Controllers.join(' ')})` : ''}; Kubernetes is dropping cgroup v1 (kubelets 1.35+ refuse it unless failCgroupV1: false)`, UNIFIED_FIX)];
    case 'v1':
      return [warn('cgroup.mode', 'cgroup v1 only; Kubernetes is dropping cgroup v1 (kubelets 1.35+ refuse it unless failCgroupV1: false)', UNIFIED_FIX)];
    case 'none':
      return [fail('cgroup.mode', 'no cgroup filesystem is mounted at /sys/fs/cgroup: containers cannot be limited or accounted',
        'mount -t cgroup2 none /sys/fs/cgroup (and have the init system do it at boot)', true)];
  }
}

/** The kubelet's cgroupDriver from its KubeletConfiguration file: a top-level YAML key, cgroupfs when absent (the kubelet's default). */
export function kubeletCgroupDriver(yaml: string): string {
  const match = /^cgroupDriver:\s*["']?([A-Za-z]+)["']?\s*(#.*)?$/m.exec(yaml);
  return match ? match[1] : 'cgroupfs';
}

export async function checkCgroupDriver(ctx: DoctorContext): Promise<CheckResult[]> {
  const ours = ctx.config.cgroup.driver;
  const out: CheckResult[] = [];
  if (ours === 'systemd') {
    const socket = ctx.config.cgroup.systemd_socket;
    const fix = 'set cgroup.driver = "cgroupfs" in /etc/berth/berth.toml (and cgroupDriver: cgroupfs for the kubelet), or cgroup.systemd_socket to systemd\'s socket';
    if (socket ? !(await ctx.host.lstat(socket))?.isSocket() : !(await ctx.host.exists('/run/systemd/system'))) {
      out.push(fail('cgroup.systemd', `cgroup.driver is "systemd" but ${socket ? `${socket} is not a socket` : 'systemd is not the init system here (/run/systemd/system is missing)'}: berthd will not start`, fix));
    } else out.push(ok('cgroup.systemd', `systemd's manager is there for the systemd driver (${socket || '/run/systemd/system'})`));
  }
  const yaml = await ctx.host.read(KUBELET_CONFIG);
  if (yaml === undefined) {
    out.push(ok('cgroup.driver', `berth uses the ${ours} driver; no ${KUBELET_CONFIG} to compare with (a kubelet must be given --cgroup-driver=${ours})`));
    return out;
  }
  const theirs = kubeletCgroupDriver(yaml);
  if (theirs === ours) out.push(ok('cgroup.driver', `berth and the kubelet (${KUBELET_CONFIG}) both use the ${ours} driver`));
  else {
    out.push(fail('cgroup.driver', `the kubelet uses the ${theirs} driver (${KUBELET_CONFIG}) but berth uses ${ours}: pods would be placed in cgroups the kubelet does not manage`,
      `set cgroup.driver = "${theirs}" in /etc/berth/berth.toml.d/10-cgroup.toml (or cgroupDriver: ${ours} in ${KUBELET_CONFIG}), then restart berthd and the kubelet`));
  }
  return out;
}
