// ExecSync's process started by berth-exec (native/exec/exec.c) instead of
// `runc exec`, for containers it can describe fully: runc 1.1 spends tens of
// milliseconds (Go start-up, a copy of its own binary into a memfd) and most
// of a kubelet's probe CPU on each exec; berth-exec joins the init's cgroups
// and namespaces, sets user, groups, capabilities, rlimits, umask,
// no_new_privs and oom_score_adj as runc exec does, and execs. Anything it
// does not reproduce (a seccomp filter, an AppArmor or SELinux label, a user
// namespace, a terminal, a limit it does not know, another runtime's state)
// leaves the exec to the runtime.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXEC_HELPER_NAME, NATIVE_DIR, type BerthNative } from '../../native';
import type { OciProcess, OciRuntime } from '../oci/oci-runtime';
import { capabilityNumber } from './capabilities';
import type { OciSpec } from './oci-spec-types';

/** getrlimit(2) resources by their OCI names (the same numbers on every Linux architecture Node runs on but MIPS/SPARC/Alpha). */
const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5, RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10, RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

/** Namespaces joined besides the PID namespace, mount last (it changes the root the others' paths are read under). */
const JOINED: [ociType: string, procName: string][] = [['ipc', 'ipc'], ['uts', 'uts'], ['network', 'net'], ['cgroup', 'cgroup'], ['mount', 'mnt']];
const UNLIMITED = 2 ** 64 - 1;
const SUPPORTED_ARCHES = new Set(['x64', 'arm64', 'arm', 'ppc64', 's390x', 'riscv64', 'ia32']);

interface RuncState {
  init_process_pid?: number;
  init_process_start?: number;
  cgroup_paths?: Record<string, string>;
}

/** The capability mask of a list of names; undefined when one is unknown. */
function capabilityMask(names: readonly string[] | undefined): bigint | undefined {
  let mask = 0n;
  for (const name of names ?? []) {
    const n = capabilityNumber(name);
    if (n === undefined) return undefined;
    mask |= 1n << BigInt(n);
  }
  return mask;
}

/** What berth-exec needs of runc's state of a running container: fixed for as long as its init runs. */
export interface InitFacts {
  initPid: number;
  initStart: number;
  cgroups: string[];
}

/** The child fd berth-exec writes the process's pid into (a pipe berthd reads; see exec.c's pidout). */
export const PID_OUT_CHILD_FD = 5;

/** runc's state of container `id` as berth-exec needs it; undefined when the exec must go through the runtime. */
export async function readInitFacts(runtime: OciRuntime, id: string): Promise<InitFacts | undefined> {
  let state: RuncState;
  try {
    state = JSON.parse(await readFile(join(runtime.root, id, 'state.json'), 'utf8')) as RuncState;
  } catch {
    return undefined;
  }
  const initPid = state.init_process_pid;
  const initStart = state.init_process_start;
  const cgroups = [...new Set(Object.values(state.cgroup_paths ?? {}))];
  if (!initPid || !initStart || cgroups.some((path) => typeof path !== 'string' || !path.startsWith('/sys/fs/cgroup/'))) return undefined;
  return { initPid, initStart, cgroups };
}

/** Whether berth-exec can run `process` in a container of this runtime and spec at all (before any state is read). */
export function directExecPossible(runtime: OciRuntime, spec: OciSpec, process: OciProcess): boolean {
  if (!runtime.fastPaths || !SUPPORTED_ARCHES.has(globalThis.process.arch)) return false;
  if (process.terminal || process.apparmorProfile || process.selinuxLabel || spec.linux.seccomp) return false;
  const extra = spec.process as unknown as Record<string, unknown>;
  if (extra.ioPriority !== undefined || extra.scheduler !== undefined || (spec.linux as Record<string, unknown>).personality !== undefined) return false;
  const types = new Set(spec.linux.namespaces.map((ns) => ns.type));
  return !types.has('user') && !types.has('time');
}

/**
 * berth-exec's request (NUL-separated key/value pairs) for running `process` in
 * the container whose init is `init`, or undefined when the exec must go through
 * the runtime. The process's pid comes back on PID_OUT_CHILD_FD.
 */
export function directExecRequest(spec: OciSpec, process: OciProcess, init: InitFacts): Buffer | undefined {
  const types = new Set(spec.linux.namespaces.map((ns) => ns.type));
  const { initPid, initStart, cgroups } = init;
  const caps = process.capabilities;
  const masks = caps ? (['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const).map((set) => capabilityMask(caps[set])) : [0n, 0n, 0n, 0n, 0n];
  if (masks.some((m) => m === undefined)) return undefined;
  const rlimits: string[] = [];
  for (const limit of process.rlimits ?? []) {
    const resource = RLIMITS[limit.type];
    if (resource === undefined) return undefined;
    const value = (v: number): string => (v >= UNLIMITED ? '-1' : String(v));
    rlimits.push(`${resource} ${value(limit.soft)} ${value(limit.hard)}`);
  }

  const pairs: [string, string][] = [
    ['pidout', String(PID_OUT_CHILD_FD)],
    ['initpid', String(initPid)],
    ['initstart', String(initStart)],
    ['pidns', `/proc/${initPid}/ns/pid`],
    ...JOINED.filter(([type]) => types.has(type)).map(([, name]): [string, string] => ['ns', `/proc/${initPid}/ns/${name}`]),
    ...cgroups.map((dir): [string, string] => ['cgroup', join(dir, 'cgroup.procs')]),
    ...rlimits.map((r): [string, string] => ['rlimit', r]),
    ['uid', String(process.user.uid)],
    ['gid', String(process.user.gid)],
    ...(process.user.additionalGids ?? []).map((g): [string, string] => ['group', String(g)]),
    ['capbnd', String(masks[0])],
    ['capeff', String(masks[1])],
    ['capprm', String(masks[2])],
    ['capinh', String(masks[3])],
    ['capamb', String(masks[4])],
    ['nnp', process.noNewPrivileges ? '1' : '0'],
    ['cwd', process.cwd || '/'],
    ...process.env.map((e): [string, string] => ['env', e]),
    ...process.args.map((a): [string, string] => ['arg', a]),
  ];
  if (process.oomScoreAdj !== undefined) pairs.push(['oom', String(process.oomScoreAdj)]);
  if (process.user.umask !== undefined) pairs.push(['umask', String(process.user.umask)]);
  // A NUL inside a value would split it: such a process goes through the runtime, which refuses it.
  if (pairs.some(([, v]) => v.includes('\0'))) return undefined;
  return Buffer.from(pairs.map(([k, v]) => `${k}\0${v}\0`).join(''), 'utf8');
}

let helperFd: number | null | undefined;

/** The sealed copy of berth-exec this daemon runs (made on first use); undefined when it is not built. */
export function execHelperFd(native: Pick<BerthNative, 'sealedCopy'>): number | undefined {
  if (helperFd === undefined) {
    try {
      helperFd = native.sealedCopy(join(NATIVE_DIR, 'build', 'Release', EXEC_HELPER_NAME));
    } catch {
      helperFd = null;
    }
  }
  return helperFd ?? undefined;
}

/** The child fd the helper's sealed copy is placed at, and the path it is run by. */
export const HELPER_CHILD_FD = 4;
export const HELPER_PATH = `/proc/self/fd/${HELPER_CHILD_FD}`;
