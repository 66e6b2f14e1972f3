// The rest of the node: berthd's privileges, CNI plugins for the pod network,
// disk space for images, and who may use the CRI socket.
import { join } from 'node:path';
import { CAP_SYS_ADMIN, CAP_SYS_RESOURCE, hasCapability } from '../../../native';
import { type CheckResult, type DoctorContext, fail, ok, warn } from './doctor-types';

/** CapEff of <root>/proc/self/status as the decimal mask native.effectiveCapabilities() returns. */
async function effectiveCapabilities(ctx: DoctorContext): Promise<string | undefined> {
  const status = await ctx.host.read('/proc/self/status');
  const hex = status ? /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(status)?.[1] : undefined;
  return hex === undefined ? undefined : BigInt(`0x${hex}`).toString();
}

export async function checkPrivileges(ctx: DoctorContext): Promise<CheckResult[]> {
  const caps = await effectiveCapabilities(ctx);
  if (caps === undefined) return [warn('privileges', 'could not read CapEff from /proc/self/status', 'run berthd doctor as root')];
  const out: CheckResult[] = [];
  if (!hasCapability(caps, CAP_SYS_ADMIN)) {
    out.push(fail('privileges.sys_admin', 'no CAP_SYS_ADMIN: berthd cannot pin namespaces or mount root filesystems',
      'run berthd as root (the unit in deploy/berthd.service does)', true));
  } else out.push(ok('privileges.sys_admin', 'CAP_SYS_ADMIN held'));
  if (!hasCapability(caps, CAP_SYS_RESOURCE)) {
    const own = (await ctx.host.value('/proc/self/oom_score_adj')) ?? '0';
    out.push(warn('privileges.sys_resource', `no CAP_SYS_RESOURCE: oom_score_adj below ${own} (the kubelet asks -998 for sandboxes) is raised to ${own}`,
      'run berthd with CAP_SYS_RESOURCE (as root outside a restricted container), or accept the clamp: oci.oom_score_adj_restriction = "auto"'));
  } else out.push(ok('privileges.sys_resource', 'CAP_SYS_RESOURCE held: oom_score_adj is applied as asked'));
  return out;
}

const DEFAULT_CONFLIST_PLUGINS = ['bridge', 'host-local', 'portmap', 'loopback'];

async function findPluginIn(ctx: DoctorContext, binDirs: readonly string[], type: string): Promise<string | undefined> {
  for (const dir of binDirs) {
    const stat = await ctx.host.stat(join(dir, type));
    if (stat?.isFile() && (stat.mode & 0o111) !== 0) return join(dir, type);
  }
  return undefined;
}

export async function checkCniPlugins(ctx: DoctorContext): Promise<CheckResult[]> {
  const { conf_dir: confDir, bin_dirs: binDirs } = ctx.config.cni;
  const names = (await ctx.host.list(confDir)).filter((n) => /\.(conflist|conf|json)$/.test(n)).sort();
  const install = 'apt-get install containernetworking-plugins';
  let source: string;
  let plugins: string[];
  if (names.length === 0) {
    if (!ctx.config.cni.write_default_conflist) {
      return [warn('cni.network', `no network config in ${confDir}: NetworkReady stays false until one is installed`,
        `install your cluster's CNI (it writes a conflist into ${confDir}), or set cni.write_default_conflist = true`)];
    }
    source = `berth's default bridge network (written into ${confDir} at start)`;
    plugins = DEFAULT_CONFLIST_PLUGINS;
  } else {
    const first = join(confDir, names[0]);
    let parsed: { plugins?: { type?: unknown }[]; type?: unknown };
    try {
      parsed = JSON.parse((await ctx.host.read(first)) ?? '') as typeof parsed;
    } catch {
      return [fail('cni.network', `${first} is not valid JSON: pods cannot get a network`, `fix or remove ${first}`)];
    }
    source = first;
    plugins = (parsed.plugins ?? [parsed]).map((p) => (typeof p.type === 'string' ? p.type : '')).filter(Boolean);
  }
  const missing: string[] = [];
  for (const type of plugins) if (!(await findPluginIn(ctx, binDirs, type))) missing.push(type);
  if (missing.length > 0) {
    return [fail('cni.plugins', `${source} needs ${missing.join(', ')}, not found in ${binDirs.join(', ')}: pods cannot get a network`,
      `${install} (or add the directory holding them to cni.bin_dirs)`)];
  }
  return [ok('cni.plugins', `${source}: plugins ${plugins.join(', ')} found in ${binDirs.join(', ')}`)];
}

const GIB = 1024 ** 3;

function size(bytes: number): string {
  return bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : `${Math.round(bytes / 1024 / 1024)} MiB`;
}

export async function checkDiskSpace(ctx: DoctorContext): Promise<CheckResult[]> {
  const fs = await ctx.host.statfs(ctx.config.root);
  if (!fs) return [warn('disk.space', `cannot statfs ${ctx.config.root} or any directory above it`, `mkdir -p ${ctx.config.root}`)];
  const total = fs.stats.blocks * fs.stats.bsize;
  const free = fs.stats.bavail * fs.stats.bsize;
  const found = `${size(free)} free of ${size(total)} at ${fs.at} (holding ${ctx.config.root})`;
  const fix = `free space on the filesystem of ${fs.at} (crictl rmi --prune removes unused images), or move root to a larger volume`;
  // Small filesystems are judged by share, large ones by an absolute floor.
  if (free < Math.min(GIB, total * 0.05)) return [fail('disk.space', `${found}: image pulls and container writes will fail`, fix)];
  if (free < Math.min(10 * GIB, total * 0.15)) return [warn('disk.space', `${found}: the kubelet's image GC starts at 85% used`, fix)];
  return [ok('disk.space', found)];
}

export async function checkSocket(ctx: DoctorContext): Promise<CheckResult[]> {
  const socket = ctx.config.socket;
  const fix = `stop berthd, rm ${socket}, and start it again (berthd creates it root-owned, mode 0660)`;
  const stat = await ctx.host.lstat(socket);
  if (!stat) return [ok('socket', `${socket} does not exist (berthd is not running with this config)`)];
  if (!stat.isSocket()) return [fail('socket', `${socket} is not a socket: berthd cannot listen there`, `rm ${socket}`)];
  const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
  if (stat.uid !== 0) return [fail('socket', `${socket} is owned by uid ${stat.uid}, not root: that user controls berth`, fix)];
  if ((stat.mode & 0o007) !== 0) return [fail('socket', `${socket} is mode ${mode}: every local user can run containers as root`, `chmod 0660 ${socket} (and ${fix})`)];
  const dir = await ctx.host.stat(join(socket, '..'));
  if (dir && (dir.mode & 0o002) !== 0 && (dir.mode & 0o1000) === 0) {
    return [fail('socket', `${join(socket, '..')} is world-writable: anyone can replace the socket`, `chmod o-w ${join(socket, '..')}`)];
  }
  return [ok('socket', `${socket}: owner uid ${stat.uid}, gid ${stat.gid}, mode ${mode}`)];
}
