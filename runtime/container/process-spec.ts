// The processes of a container: its init process (command line, env, cwd,
// user, capabilities, security labels) and every process exec'd in it later,
// ExecSync's and interactive exec's alike, which run as the init process does
// with only the command (and the terminal) swapped.
import { readFileSync } from 'node:fs';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { invalidArgument } from '../errors';
import { clampOomScoreAdj } from '../host/host-facts';
import type { ImageRecord } from '../image/image-types';
import type { OciProcess } from '../oci/oci-runtime';
import { containerCapabilities, hostCapabilities } from './capabilities';
import { int64Field } from './cri-int64';
import type { ContainerSecurityContext, SpecInput } from './oci-spec-types';
import { resolveUser, type ResolvedUser } from './user-lookup';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const UID_MAX = 0xffffffff;

export interface ContainerProcess {
  process: OciProcess;
  user: ResolvedUser;
  /** The capability set granted (the seccomp profile follows it). */
  capabilities: string[];
  /** What the process leaves out of the request, for the log. */
  warnings: string[];
}

/** The command line as Kubernetes defines it against the image's Entrypoint/Cmd. */
export function commandLine(config: Pick<ContainerConfig__Output, 'command' | 'args'>, image: Pick<ImageRecord, 'config'>): string[] {
  const entrypoint = image.config.Entrypoint ?? [];
  const cmd = image.config.Cmd ?? [];
  let argv: string[];
  if (config.command.length > 0) argv = [...config.command, ...config.args];
  else argv = [...entrypoint, ...(config.args.length > 0 ? config.args : cmd)];
  if (argv.length === 0) throw invalidArgument('config.command: neither the request nor the image names a command to run');
  if (!argv[0]) {
    const from = config.command.length > 0 ? 'config.command[0]' : entrypoint.length > 0 ? 'the image\'s Entrypoint[0]' : 'the image\'s Cmd[0]';
    throw invalidArgument(`${from}: the program to run is empty`);
  }
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

/** The container's init process: who it runs as, what it runs, with what it may do. */
export function containerProcess(input: SpecInput, sc: ContainerSecurityContext, privileged: boolean): ContainerProcess {
  const { config, sandbox, image, host } = input;
  const user = resolveUser(input.users, {
    runAsUser: sc?.run_as_user ? int64Field(sc.run_as_user.value, 'config.linux.security_context.run_as_user', 0, UID_MAX) : undefined,
    runAsUsername: sc?.run_as_username || undefined,
    runAsGroup: sc?.run_as_group ? int64Field(sc.run_as_group.value, 'config.linux.security_context.run_as_group', 0, UID_MAX) : undefined,
    supplementalGroups: (sc?.supplemental_groups ?? []).map((g, i) => int64Field(g, `config.linux.security_context.supplemental_groups[${i}]`, 0, UID_MAX)),
    imageUser: image.config.User ?? '',
    supplementalGroupsPolicy: sc?.supplemental_groups_policy === 'Strict' ? 'Strict' : 'Merge',
  });

  const workingDir = config.working_dir || image.config.WorkingDir || '/';
  if (!workingDir.startsWith('/')) throw invalidArgument(`config.working_dir: "${workingDir}" must be absolute`);

  const args = commandLine(config, image);
  const extraEnv: string[] = [];
  if (sandbox.hostname) extraEnv.push(`HOSTNAME=${sandbox.hostname}`);
  if (config.tty) extraEnv.push('TERM=xterm');
  const requestEnv = (config.envs ?? []).map((e) => ({ key: e.key ?? '', value: Buffer.isBuffer(e.value) ? e.value.toString('utf8') : String(e.value ?? '') }));
  const env = mergeEnv(image.config.Env ?? [], requestEnv, extraEnv);

  const granted = containerCapabilities(
    sc?.capabilities?.add_capabilities ?? [],
    sc?.capabilities?.drop_capabilities ?? [],
    privileged,
    input.hostCapabilities ?? hostCapabilities(),
    sc?.capabilities?.add_ambient_capabilities ?? [],
  );
  const { capabilities, ambient } = granted;
  const warnings = granted.ungranted.map((c) => `${c} left out: berthd does not hold it, so no container can be given it`);

  const oomWanted = int64Field(config.linux?.resources?.oom_score_adj, 'config.linux.resources.oom_score_adj', -1000, 1000);
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
  return { process, user, capabilities, warnings };
}

/**
 * The one process spec for `runtime exec` in a container (ExecSync and
 * interactive exec): the container's own process (user with its additional
 * gids, env, cwd, capabilities, AppArmor/SELinux labels, no_new_privs,
 * rlimits, oom_score_adj) with `cmd` and the terminal swapped in. A terminal
 * gets TERM=xterm unless the container's env names one.
 */
export function execProcess(container: OciProcess, cmd: string[], tty: boolean): OciProcess {
  const { consoleSize: _initialSize, ...base } = container;
  const env = [...base.env];
  if (tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  return { ...base, terminal: tty, args: [...cmd], env };
}

function apparmorProfile(sc: ContainerSecurityContext, privileged: boolean): string | undefined {
  if (privileged || !sc) return undefined;
  const profile = sc.apparmor;
  if (profile?.profile_type === 'Localhost' && profile.localhost_ref) {
    if (!apparmorEnabled()) throw invalidArgument('config.linux.security_context.apparmor: AppArmor is not enabled on this host');
    return profile.localhost_ref.replace(/^localhost\//, '');
  }
  if (sc.apparmor_profile?.startsWith('localhost/')) {
    if (!apparmorEnabled()) throw invalidArgument('config.linux.security_context.apparmor_profile: AppArmor is not enabled on this host');
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
