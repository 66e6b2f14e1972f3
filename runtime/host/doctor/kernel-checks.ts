// Kernel prerequisites: overlay, bridge netfilter, IP forwarding, swap (for the
// kubelet), user namespaces with idmapped mounts, and the overlay features
// berth's layer mounts use.
import { compareVersions } from '../binaries';
import { type CheckResult, type DoctorContext, fail, moduleFix, ok, sysctlFix, warn } from './doctor-types';
import { mountOf } from './host-root';

export async function kernelRelease(ctx: DoctorContext): Promise<string> {
  return (await ctx.host.value('/proc/sys/kernel/osrelease')) ?? '';
}

/** "6.1.0-18-amd64" -> "6.1.0"; "" when unknown. */
function releaseVersion(release: string): string {
  return /^(\d+\.\d+(?:\.\d+)?)/.exec(release)?.[1] ?? '';
}

export async function checkOverlay(ctx: DoctorContext): Promise<CheckResult[]> {
  const filesystems = (await ctx.host.read('/proc/filesystems')) ?? '';
  if (/\toverlay$/m.test(filesystems)) return [ok('kernel.overlay', 'the overlay filesystem is available')];
  const release = await kernelRelease(ctx);
  const modules = await ctx.host.list(`/lib/modules/${release}/kernel/fs/overlayfs`);
  if (modules.some((m) => m.startsWith('overlay.ko'))) {
    return [warn('kernel.overlay', 'the overlay module is not loaded (the first container mount loads it)', moduleFix('overlay'))];
  }
  return [fail('kernel.overlay', `kernel ${release || '(unknown)'} has no overlay filesystem: container root filesystems cannot be mounted`,
    'install a kernel with CONFIG_OVERLAY_FS (Debian: apt-get install linux-image-amd64) and reboot', true)];
}

export async function checkBridgeNetfilter(ctx: DoctorContext): Promise<CheckResult[]> {
  const v4 = await ctx.host.value('/proc/sys/net/bridge/bridge-nf-call-iptables');
  if (v4 === undefined) {
    return [warn('kernel.br_netfilter', 'br_netfilter is not loaded: traffic between pods on one bridge bypasses iptables, so Services (kube-proxy) do not see it',
      `${moduleFix('br_netfilter')} && ${sysctlFix('net.bridge.bridge-nf-call-iptables', '1')}`)];
  }
  const v6 = await ctx.host.value('/proc/sys/net/bridge/bridge-nf-call-ip6tables');
  const off = [v4 === '1' ? '' : 'net.bridge.bridge-nf-call-iptables', v6 === undefined || v6 === '1' ? '' : 'net.bridge.bridge-nf-call-ip6tables'].filter(Boolean);
  if (off.length === 0) return [ok('kernel.br_netfilter', 'br_netfilter is loaded and bridged traffic goes through iptables')];
  return [warn('kernel.br_netfilter', `${off.join(' and ')} ${off.length > 1 ? 'are' : 'is'} 0: Services (kube-proxy) miss traffic between pods on one bridge`,
    off.map((key) => sysctlFix(key, '1')).join(' && '))];
}

export async function checkIpForward(ctx: DoctorContext): Promise<CheckResult[]> {
  const value = await ctx.host.value('/proc/sys/net/ipv4/ip_forward');
  if (value === '1') return [ok('kernel.ip_forward', 'net.ipv4.ip_forward is 1')];
  return [fail('kernel.ip_forward', `net.ipv4.ip_forward is ${value ?? 'unreadable'}: pods cannot reach other nodes or anything outside this one`,
    sysctlFix('net.ipv4.ip_forward', '1'))];
}

export async function checkSwap(ctx: DoctorContext): Promise<CheckResult[]> {
  const swaps = ((await ctx.host.read('/proc/swaps')) ?? '').split('\n').slice(1).filter((l) => l.trim());
  if (swaps.length === 0) return [ok('kernel.swap', 'no swap is on (the kubelet\'s default failSwapOn is satisfied)')];
  return [warn('kernel.swap', `swap is on (${swaps.map((l) => l.split(/\s+/)[0]).join(', ')}): a kubelet with its default failSwapOn: true will not start`,
    'swapoff -a and remove the swap lines from /etc/fstab, or set failSwapOn: false (and memorySwap) in /var/lib/kubelet/config.yaml')];
}

export async function checkUserNamespaces(ctx: DoctorContext): Promise<CheckResult[]> {
  const max = Number(await ctx.host.value('/proc/sys/user/max_user_namespaces'));
  const version = releaseVersion(await kernelRelease(ctx));
  const out: CheckResult[] = [];
  if (!(max > 0)) {
    out.push(warn('kernel.user_namespaces', `user.max_user_namespaces is ${Number.isNaN(max) ? 'unreadable' : max}: pods with hostUsers: false cannot run`,
      sysctlFix('user.max_user_namespaces', '28633')));
  } else out.push(ok('kernel.user_namespaces', `user namespaces are enabled (user.max_user_namespaces = ${max})`));
  // Idmapped mounts: mount_setattr (5.12); overlay over idmapped layers (5.19); tmpfs (6.3).
  if (version && compareVersions(version, '5.19') >= 0) {
    out.push(ok('kernel.idmapped_mounts', `kernel ${version} has idmapped mounts, for overlay too (5.19+)`));
  } else {
    out.push(warn('kernel.idmapped_mounts', `kernel ${version || '(unknown)'} lacks idmapped overlay mounts (5.19+): pods with hostUsers: false would need chowned layer copies`,
      'install a kernel of 5.19 or later (Debian 12: apt-get install -t bookworm-backports linux-image-amd64) and reboot'));
  }
  return out;
}

const OVERLAYFS_MAGIC_TYPES = new Set(['overlay', 'aufs']);

export async function checkOverlayFeatures(ctx: DoctorContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const backing = mountOf(await ctx.host.mounts(), ctx.config.root);
  if (backing && OVERLAYFS_MAGIC_TYPES.has(backing.fsType)) {
    out.push(fail('overlay.backing_fs', `${ctx.config.root} is on ${backing.fsType} (${backing.mountPoint}): overlay upper directories cannot live there, so no container can start`,
      `set root in /etc/berth/berth.toml to a directory on ext4, xfs or btrfs (e.g. a volume mounted at ${ctx.config.root})`, true));
  } else {
    out.push(ok('overlay.backing_fs', `${ctx.config.root} is on ${backing?.fsType ?? 'an unknown filesystem'}${backing ? ` (${backing.mountPoint})` : ''}`));
  }
  const version = releaseVersion(await kernelRelease(ctx));
  if (version && compareVersions(version, '6.8') >= 0) {
    out.push(ok('overlay.lowerdir_plus', `kernel ${version} takes overlay layers one by one (lowerdir+, 6.8+): no limit from the option string`));
  } else {
    out.push(warn('overlay.lowerdir_plus', `kernel ${version || '(unknown)'} has no overlay "lowerdir+" (6.8+): berth falls back to one option string, which a page (4 KiB) limits to roughly 100 layers`,
      'install a kernel of 6.8 or later to lift the limit (Debian 12: apt-get install -t bookworm-backports linux-image-amd64)'));
  }
  const params: string[] = [];
  for (const name of ['index', 'metacopy', 'redirect_dir', 'xino_auto']) {
    const value = await ctx.host.value(`/sys/module/overlay/parameters/${name}`);
    if (value !== undefined) params.push(`${name}=${value}`);
  }
  // Both let an overlay xattr point at other data; the kernel's docs advise against them with untrusted layers.
  const risky = ['metacopy', 'redirect_dir'].filter((name) => params.includes(`${name}=Y`));
  if (risky.length > 0) {
    out.push(warn('overlay.parameters', `overlay defaults: ${params.join(' ')}: ${risky.join(' and ')} let an overlay xattr point at other data, which layers from untrusted images should not`,
      `${risky.map((n) => `echo N > /sys/module/overlay/parameters/${n}`).join(' && ')} && echo "options overlay ${risky.map((n) => `${n}=off`).join(' ')}" > /etc/modprobe.d/berth-overlay.conf`));
  } else {
    out.push(ok('overlay.parameters', params.length ? `overlay defaults: ${params.join(' ')}` : 'overlay module parameters not exposed (built in with defaults)'));
  }
  return out;
}
