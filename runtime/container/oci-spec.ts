// The OCI runtime spec (config.json) of a container, built from the CRI
// ContainerConfig, the image's config and the pod. Pure apart from reading the
// rootfs' user database, host device nodes and /proc/self/mountinfo, so it is
// unit-tested with plain objects.
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { CgroupDriver } from '../config';
import { failedPrecondition, invalidArgument } from '../errors';
import type { HostFacts } from '../host/host-facts';
import { clampOomScoreAdj } from '../host/host-facts';
import type { ImageRecord } from '../image/image-types';
import type { OciProcess } from '../oci/oci-runtime';
import type { PodSandboxView } from '../sandbox/sandbox-types';
import { containerCapabilities, hostCapabilities } from './capabilities';
import { defaultSeccompProfile, loadSeccompProfile, type OciSeccomp } from './seccomp-profile';
import { resolveUser, type ResolvedUser } from './user-lookup';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciLinuxDevice {
  path: string;
  type: 'c' | 'b' | 'p' | 'u';
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface OciDeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface OciResources {
  devices?: OciDeviceRule[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  hugepageLimits?: { pageSize: string; limit: number }[];
  unified?: Record<string, string>;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    resources: OciResources;
    cgroupsPath: string;
    namespaces: { type: string; path?: string }[];
    devices: OciLinuxDevice[];
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: OciSeccomp;
    sysctl?: Record<string, string>;
    rootfsPropagation?: string;
  };
}

export interface SpecInput {
  id: string;
  config: ContainerConfig__Output;
  sandbox: PodSandboxView;
  image: ImageRecord;
  /** The mounted rootfs (overlay). */
  rootfs: string;
  host: Pick<HostFacts, 'minOomScoreAdj' | 'cgroup'>;
  cgroupDriver: CgroupDriver;
  /** PID-namespace file of the target container when pid mode is TARGET. */
  targetPidNsPath?: string;
  /** File of berth's RuntimeDefault profile when configured; "" = built in. */
  seccompDefaultProfilePath: string;
  /** Where host mount propagation is read (tests pass a fixture). */
  mountInfoPath?: string;
  /** Capabilities berthd holds (default: read from /proc/self/status). */
  hostCapabilities?: string[];
}

export interface BuiltSpec {
  spec: OciSpec;
  user: ResolvedUser;
  /** Signal to stop the container with (image StopSignal or the CRI's stop_signal). */
  stopSignal: string;
  /** What the spec leaves out of the request, for the log. */
  warnings: string[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Numbers arrive as decimal strings (int64); parse with a field name for errors. */
export function int64Field(value: string | undefined, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === '') return 0;
  if (!/^-?\d+$/.test(value)) throw invalidArgument(`${field}: "${value}" is not an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalidArgument(`${field}: ${value} is out of range [${min}, ${max}]`);
  return n;
}

/** The command line as Kubernetes defines it against the image's Entrypoint/Cmd. */
export function commandLine(config: Pick<ContainerConfig__Output, 'command' | 'args'>, image: Pick<ImageRecord, 'config'>): string[] {
  const entrypoint = image.config.Entrypoint ?? [];
  const cmd = image.config.Cmd ?? [];
  let argv: string[];
  if (config.command.length > 0) argv = [...config.command, ...config.args];
  else argv = [...entrypoint, ...(config.args.length > 0 ? config.args : cmd)];
  if (argv.length === 0) throw invalidArgument('config.command: neither the request nor the image names a command to run');
  return argv;
}

/** Image env, then the request's, a later key replacing an earlier one in place. */
export function mergeEnv(imageEnv: string[], requestEnv: { key: string; value: string }[], extra: string[]): string[] {
  const order: string[] = [];
  const values = new Map<string, string>();
  const put = (entry: string): void => {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!values.has(key)) order.push(key);
    values.set(key, entry);
  };
  for (const e of extra) put(e);
  for (const e of imageEnv) put(e);
  for (const { key, value } of requestEnv) put(`${key}=${value}`);
  if (!values.has('PATH')) put(`PATH=${DEFAULT_PATH}`);
  return order.map((k) => values.get(k)!);
}

export function stopSignalOf(config: ContainerConfig__Output, image: ImageRecord): string {
  const fromRequest = config.stop_signal && config.stop_signal !== 'SIGNAL_RUNTIME_DEFAULT' ? String(config.stop_signal).replace(/^SIGNAL_/, '') : '';
  const signal = fromRequest || image.config.StopSignal || 'SIGTERM';
  return /^\d+$/.test(signal) ? signal : signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
}

export function cgroupsPathFor(driver: CgroupDriver, parent: string, id: string): string {
  if (driver === 'systemd') return `${parent || 'system.slice'}:berth:${id}`;
  const base = parent ? (parent.startsWith('/') ? parent : `/${parent}`) : '/berth';
  return `${base.replace(/\/+$/, '')}/${id}`;
}

/** OCI LinuxResources from the CRI's, for create and for UpdateContainerResources. */
export function ociResources(
  r: LinuxContainerResources__Output | null | undefined,
  host: Pick<HostFacts, 'cgroup'>,
  prefix = 'linux.resources',
): OciResources {
  const out: OciResources = {};
  if (!r) return out;
  const shares = int64Field(r.cpu_shares, `${prefix}.cpu_shares`, 0, 262144);
  const quota = int64Field(r.cpu_quota, `${prefix}.cpu_quota`, -1);
  const period = int64Field(r.cpu_period, `${prefix}.cpu_period`, 0, 1_000_000);
  const cpu: NonNullable<OciResources['cpu']> = {};
  if (shares > 0) cpu.shares = shares;
  if (quota !== 0) cpu.quota = quota;
  if (period > 0) cpu.period = period;
  if (r.cpuset_cpus) cpu.cpus = r.cpuset_cpus;
  if (r.cpuset_mems) cpu.mems = r.cpuset_mems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  const limit = int64Field(r.memory_limit_in_bytes, `${prefix}.memory_limit_in_bytes`, 0);
  const swap = int64Field(r.memory_swap_limit_in_bytes, `${prefix}.memory_swap_limit_in_bytes`, -1);
  if (limit > 0 || swap !== 0) {
    out.memory = {};
    if (limit > 0) out.memory.limit = limit;
    if (swap !== 0) out.memory.swap = swap;
  }
  const hugepages = (r.hugepage_limits ?? []).filter((h) => h.page_size);
  if (hugepages.length > 0) {
    out.hugepageLimits = hugepages.map((h, i) => ({ pageSize: h.page_size, limit: int64Field(h.limit, `${prefix}.hugepage_limits[${i}].limit`, 0) }));
  }
  if (r.unified && Object.keys(r.unified).length > 0) {
    if (host.cgroup.mode !== 'v2') throw invalidArgument(`${prefix}.unified: this host's cgroups are ${host.cgroup.mode}; unified settings need cgroup v2`);
    out.unified = { ...r.unified };
  }
  return out;
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
    if (['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/console', '/dev/ptmx', '/dev/fd', '/dev/core'].includes(p)) continue;
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

interface MountInfoEntry {
  mountPoint: string;
  optional: string[];
}

function readMountInfo(path: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    out.push({ mountPoint: f[4].replace(/\\040/g, ' '), optional: f.slice(6, sep) });
  }
  return out;
}

/** Propagation of the mount holding `path` on the host: shared, slave or private. */
function hostPropagation(path: string, mountInfoPath: string): 'shared' | 'slave' | 'private' {
  let best: MountInfoEntry | undefined;
  for (const m of readMountInfo(mountInfoPath)) {
    const within = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (within && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  if (!best) return 'private';
  if (best.optional.some((o) => o.startsWith('shared:'))) return 'shared';
  if (best.optional.some((o) => o.startsWith('master:'))) return 'slave';
  return 'private';
}

function realHostPath(hostPath: string, field: string): string {
  try {
    // The CRI: a symlinked host path mounts the link's target.
    return realpathSync(hostPath);
  } catch {
    throw invalidArgument(`${field}: host path "${hostPath}" does not exist`);
  }
}

export function buildSpec(input: SpecInput): BuiltSpec {
  const { config, sandbox, image, host } = input;
  const linux = config.linux;
  const sc = linux?.security_context ?? null;
  const privileged = sc?.privileged ?? false;
  if (privileged && !(sandbox.config.linux?.security_context?.privileged ?? false)) {
    throw invalidArgument('linux.security_context.privileged: a privileged container needs a privileged pod sandbox');
  }

  const runAsUser = sc?.run_as_user ? int64Field(sc.run_as_user.value, 'linux.security_context.run_as_user', 0, 0xffffffff) : undefined;
  const runAsGroup = sc?.run_as_group ? int64Field(sc.run_as_group.value, 'linux.security_context.run_as_group', 0, 0xffffffff) : undefined;
  const supplementalGroups = (sc?.supplemental_groups ?? []).map((g, i) => int64Field(g, `linux.security_context.supplemental_groups[${i}]`, 0, 0xffffffff));
  const user = resolveUser(input.rootfs, {
    runAsUser,
    runAsUsername: sc?.run_as_username || undefined,
    runAsGroup,
    supplementalGroups,
    imageUser: image.config.User ?? '',
  });

  const workingDir = config.working_dir || image.config.WorkingDir || '/';
  if (!workingDir.startsWith('/')) throw invalidArgument(`config.working_dir: "${workingDir}" must be absolute`);

  const args = commandLine(config, image);
  const extraEnv: string[] = [];
  if (sandbox.hostname) extraEnv.push(`HOSTNAME=${sandbox.hostname}`);
  if (config.tty) extraEnv.push('TERM=xterm');
  const env = mergeEnv(image.config.Env ?? [], (config.envs ?? []).map((e) => ({ key: e.key ?? '', value: Buffer.isBuffer(e.value) ? e.value.toString('utf8') : String(e.value ?? '') })), extraEnv);

  const granted = containerCapabilities(
    sc?.capabilities?.add_capabilities ?? [],
    sc?.capabilities?.drop_capabilities ?? [],
    privileged,
    input.hostCapabilities ?? hostCapabilities(),
    sc?.capabilities?.add_ambient_capabilities ?? [],
  );
  const { capabilities, ambient } = granted;
  const warnings = granted.ungranted.map((c) => `${c} left out: berthd does not hold it, so no container can be given it`);

  const oomWanted = int64Field(linux?.resources?.oom_score_adj, 'linux.resources.oom_score_adj', -1000, 1000);
  const process: OciProcess = {
    terminal: config.tty,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids.length > 0 ? user.additionalGids : undefined },
    args,
    env,
    cwd: workingDir,
    capabilities: {
      bounding: capabilities,
      effective: capabilities,
      permitted: capabilities,
      inheritable: ambient.length > 0 ? ambient : [],
      ambient,
    },
    noNewPrivileges: sc?.no_new_privs ?? false,
    oomScoreAdj: clampOomScoreAdj(host, oomWanted),
  };
  const apparmor = apparmorProfile(sc, privileged);
  if (apparmor) process.apparmorProfile = apparmor;

  // Mounts: the kernel file systems, then the pod's files, then the request's.
  const requested = new Set((config.mounts ?? []).map((m) => m.container_path.replace(/\/+$/, '') || '/'));
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] },
  ];
  if (!requested.has('/dev/shm')) {
    if (sandbox.shmPath) mounts.push({ destination: '/dev/shm', type: 'bind', source: sandbox.shmPath, options: ['rbind', 'rprivate', 'rw'] });
    else mounts.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  }
  const podFiles: [string, string][] = [
    ['/etc/hosts', sandbox.hostsPath],
    ['/etc/resolv.conf', sandbox.resolvConfPath],
    ['/etc/hostname', sandbox.hostnamePath],
  ];
  for (const [destination, source] of podFiles) {
    if (!source || requested.has(destination)) continue;
    mounts.push({ destination, type: 'bind', source, options: ['rbind', 'rprivate', sc?.readonly_rootfs ? 'ro' : 'rw'] });
  }
  let rootfsPropagation: string | undefined;
  const mountInfoPath = input.mountInfoPath ?? '/proc/self/mountinfo';
  const userMounts = [...(config.mounts ?? [])].map((m, i) => ({ m, i }));
  userMounts.sort((a, b) => depth(a.m.container_path) - depth(b.m.container_path));
  for (const { m, i } of userMounts) {
    const field = `config.mounts[${i}]`;
    if (!m.container_path.startsWith('/')) throw invalidArgument(`${field}.container_path: "${m.container_path}" must be absolute`);
    if (!m.host_path) throw invalidArgument(`${field}.host_path: is empty`);
    const source = realHostPath(m.host_path, `${field}.host_path`);
    const options = ['rbind'];
    switch (m.propagation) {
      case 'PROPAGATION_HOST_TO_CONTAINER': {
        const p = hostPropagation(source, mountInfoPath);
        if (p === 'private') throw failedPrecondition(`${field}: "${m.host_path}" is on a private mount; host-to-container propagation needs a shared or slave mount`);
        options.push('rslave');
        if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
        break;
      }
      case 'PROPAGATION_BIDIRECTIONAL': {
        if (!privileged) throw invalidArgument(`${field}.propagation: bidirectional propagation needs a privileged container`);
        if (hostPropagation(source, mountInfoPath) !== 'shared') throw failedPrecondition(`${field}: "${m.host_path}" is not on a shared mount; bidirectional propagation needs one`);
        options.push('rshared');
        rootfsPropagation = 'rshared';
        break;
      }
      default:
        options.push('rprivate');
    }
    options.push(m.readonly ? 'ro' : 'rw');
    mounts.push({ destination: m.container_path, type: 'bind', source, options });
  }

  // Devices: requested ones (a directory means every device below it); privileged: the host's.
  const devices: OciLinuxDevice[] = [];
  const deviceRules: OciDeviceRule[] = [{ allow: false, access: 'rwm' }];
  if (privileged) {
    deviceRules.push({ allow: true, access: 'rwm' });
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
    if (!d.host_path) throw invalidArgument(`${field}.host_path: is empty`);
    const containerPath = d.container_path || d.host_path;
    const permissions = d.permissions || 'rwm';
    if (!/^[rwm]+$/.test(permissions)) throw invalidArgument(`${field}.permissions: "${d.permissions}" must be made of r, w and m`);
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
      if (!privileged) deviceRules.push({ allow: true, type: dev.type, major: dev.major, minor: dev.minor, access: permissions });
    }
  }

  const resources = ociResources(linux?.resources, host);
  resources.devices = deviceRules;

  const namespaces = namespacesFor(input);
  const seccomp = privileged ? undefined : seccompFor(sc, capabilities, input.seccompDefaultProfilePath);

  const maskedPaths = privileged ? [] : sc?.masked_paths?.length ? [...sc.masked_paths] : DEFAULT_MASKED_PATHS;
  const readonlyPaths = privileged ? [] : sc?.readonly_paths?.length ? [...sc.readonly_paths] : DEFAULT_READONLY_PATHS;

  const annotations: Record<string, string> = {
    ...(config.annotations ?? {}),
    'io.kubernetes.cri.container-type': 'container',
    'io.kubernetes.cri.sandbox-id': sandbox.id,
    'io.kubernetes.cri.container-name': config.metadata?.name ?? '',
    'io.kubernetes.cri.image-name': config.image?.image ?? '',
  };

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process,
    root: { path: input.rootfs, readonly: sc?.readonly_rootfs ?? false },
    mounts,
    annotations,
    linux: {
      resources,
      cgroupsPath: cgroupsPathFor(input.cgroupDriver, sandbox.cgroupParent, input.id),
      namespaces,
      devices,
      maskedPaths,
      readonlyPaths,
    },
  };
  if (seccomp) spec.linux.seccomp = seccomp;
  const sysctls = sandbox.config.linux?.sysctls ?? {};
  if (Object.keys(sysctls).length > 0) spec.linux.sysctl = { ...sysctls };
  if (rootfsPropagation) spec.linux.rootfsPropagation = rootfsPropagation;
  return { spec, user, stopSignal: stopSignalOf(config, image), warnings };
}

function depth(path: string): number {
  return path.split('/').filter(Boolean).length;
}

function apparmorProfile(sc: NonNullable<ContainerConfig__Output['linux']>['security_context'] | null, privileged: boolean): string | undefined {
  if (privileged || !sc) return undefined;
  const profile = sc.apparmor;
  if (profile?.profile_type === 'Localhost' && profile.localhost_ref) {
    if (!apparmorEnabled()) throw invalidArgument('linux.security_context.apparmor: AppArmor is not enabled on this host');
    return profile.localhost_ref.replace(/^localhost\//, '');
  }
  if (sc.apparmor_profile?.startsWith('localhost/')) {
    if (!apparmorEnabled()) throw invalidArgument('linux.security_context.apparmor_profile: AppArmor is not enabled on this host');
    return sc.apparmor_profile.slice('localhost/'.length);
  }
  // RuntimeDefault needs a loaded berth profile; without AppArmor there is none to apply.
  return undefined;
}

function apparmorEnabled(): boolean {
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}

function seccompFor(
  sc: NonNullable<ContainerConfig__Output['linux']>['security_context'] | null,
  capabilities: string[],
  defaultProfilePath: string,
): OciSeccomp | undefined {
  const profile = sc?.seccomp;
  const runtimeDefault = (): OciSeccomp => (defaultProfilePath ? loadSeccompProfile(defaultProfilePath, 'container.seccomp_default_profile') : defaultSeccompProfile(capabilities));
  if (profile) {
    switch (profile.profile_type) {
      case 'RuntimeDefault':
        return runtimeDefault();
      case 'Localhost':
        if (!profile.localhost_ref) throw invalidArgument('linux.security_context.seccomp.localhost_ref: is empty for a Localhost profile');
        return loadSeccompProfile(profile.localhost_ref, 'linux.security_context.seccomp.localhost_ref');
      default:
        return undefined;
    }
  }
  const legacy = sc?.seccomp_profile_path ?? '';
  if (legacy === 'runtime/default' || legacy === 'docker/default') return runtimeDefault();
  if (legacy.startsWith('localhost/')) return loadSeccompProfile(legacy.slice('localhost/'.length), 'linux.security_context.seccomp_profile_path');
  if (legacy === '' || legacy === 'unconfined') return undefined;
  throw invalidArgument(`linux.security_context.seccomp_profile_path: unknown profile "${legacy}"`);
}

function namespacesFor(input: SpecInput): { type: string; path?: string }[] {
  const { sandbox, config } = input;
  const out: { type: string; path?: string }[] = [{ type: 'mount' }];
  if (sandbox.netnsPath) out.push({ type: 'network', path: sandbox.netnsPath });
  if (sandbox.ipcnsPath) out.push({ type: 'ipc', path: sandbox.ipcnsPath });
  if (sandbox.utsnsPath) out.push({ type: 'uts', path: sandbox.utsnsPath });
  const pidMode = config.linux?.security_context?.namespace_options?.pid ?? 'CONTAINER';
  switch (pidMode) {
    case 'NODE':
      break;
    case 'POD':
      out.push(sandbox.pidnsPath ? { type: 'pid', path: sandbox.pidnsPath } : { type: 'pid' });
      break;
    case 'TARGET':
      if (!input.targetPidNsPath) {
        throw invalidArgument('linux.security_context.namespace_options.target_id: the target container is not running');
      }
      out.push({ type: 'pid', path: input.targetPidNsPath });
      break;
    default:
      out.push({ type: 'pid' });
  }
  if (input.host.cgroup.mode === 'v2') out.push({ type: 'cgroup' });
  return out;
}

/** The process spec for `runtime exec` in a container, with its env, cwd and user. */
export function execProcess(spec: OciSpec, args: string[], tty: boolean): OciProcess {
  return {
    terminal: tty,
    user: spec.process.user,
    args,
    env: spec.process.env,
    cwd: spec.process.cwd,
    capabilities: spec.process.capabilities,
    noNewPrivileges: spec.process.noNewPrivileges,
    apparmorProfile: spec.process.apparmorProfile,
    oomScoreAdj: spec.process.oomScoreAdj,
  };
}
