// A real systemd for tests on a machine whose PID 1 is not systemd: Debian's
// systemd booted as PID 1 of a systemd-nspawn container (own PID, mount, UTS, IPC
// and cgroup namespaces; the host's network), from a debootstrap'd rootfs cached
// under /var/cache/berth-test.
//
// What it takes on this hybrid (cgroup v1 controllers + cgroup2 beside them) host:
// - The container is started inside a cgroup of the test's own in every hierarchy
//   (/berth-systemd-<random>), so its cgroup namespace root, and everything its
//   systemd creates, lies there, and the test removes it all afterwards. nspawn
//   (--keep-unit) splits that cgroup into supervisor/ and payload/ on the
//   name=systemd and cgroup2 hierarchies only; the harness puts it in payload/ on
//   the v1 controllers beforehand, so systemd's root is <cgroup>/payload everywhere.
// - nspawn mounts the v1 controller hierarchies read-only inside (only name=systemd
//   and cgroup2 are writable), so systemd could create slices and scopes but apply
//   no memory, cpu or pids setting. The harness remounts them read-write in the
//   container's mount namespace and has systemd re-execute, after which it manages
//   every controller (MemoryMax → memory.limit_in_bytes, CPUWeight → cpu.shares …).
// - systemd refuses its private socket (/run/systemd/private, berthd's default) to
//   a client outside its PID namespace: SO_PEERCRED then reports pid 0 and systemd
//   logs "Incoming private connection from unprivileged client, refusing: No data
//   available". The test therefore speaks to it through the container's system bus
//   (dbus-daemon checks the uid only), /proc/<pid>/root/run/dbus/system_bus_socket:
//   the same client, with Hello and AddMatch first.
// - A process systemd is to adopt (PIDs=) must be in its PID namespace and already
//   inside its cgroup namespace root: startProcess() does both.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SystemdManager } from '../../runtime/cgroups/systemd-manager';

export const SYSTEMD_ROOTFS = '/var/cache/berth-test/debian-bookworm-systemd';

export interface BootedSystemd {
  /** Host pid of the container's systemd (its PID 1). */
  pid: number;
  /** The container's system bus socket as the host reaches it. */
  socket: string;
  /** The container's cgroup, relative to every hierarchy's root: systemd's "/" is here. */
  cgroupRoot: string;
  /** Runs a command inside the container (all its namespaces), returns stdout. */
  exec(args: string[]): string;
  /** Starts a long-running process in the container's namespaces and cgroup root; pid is as systemd sees it. */
  startProcess(args: string[], logFile?: string): { hostPid: number; pid: number; kill(): void };
  stop(): Promise<void>;
}

/** Why a real systemd cannot be booted here, or undefined when it can be tried. */
export function systemdUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap, systemd-nspawn, cgroups)';
  for (const tool of ['debootstrap', 'systemd-nspawn', 'nsenter']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (scripts/setup.sh installs it)`;
  }
  return undefined;
}

/** The Debian mirror apt uses on this machine (the only one reachable). */
function aptMirror(): string {
  const files = ['/etc/apt/sources.list', ...listDir('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f))];
  for (const file of files) {
    const text = readText(file);
    const deb822 = /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text);
    if (deb822) return deb822[1];
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+bookworm\s/m.exec(text);
    if (oneLine) return oneLine[1];
  }
  return 'http://deb.debian.org/debian';
}

/** debootstrap took about a minute from Debian's mirror on a fresh, loaded 2-core machine: five is a hang. */
const DEBOOTSTRAP_TIMEOUT_MS = 300_000;

const rootfsReady = (): boolean => existsSync(join(SYSTEMD_ROOTFS, 'usr/lib/systemd/systemd'));

/** Builds the cached rootfs once (about a minute); throws with debootstrap's words when it cannot. */
export function ensureSystemdRootfs(): string {
  if (rootfsReady()) return SYSTEMD_ROOTFS;
  const tmp = `${SYSTEMD_ROOTFS}.tmp-${process.pid}`;
  mkdirSync(join(SYSTEMD_ROOTFS, '..'), { recursive: true });
  const r = spawnSync('debootstrap', ['--variant=minbase', '--include=systemd,dbus', 'bookworm', tmp, aptMirror()], { encoding: 'utf8', timeout: DEBOOTSTRAP_TIMEOUT_MS });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ');
    throw new Error(`debootstrap of the test systemd's rootfs failed (${r.status ?? r.signal}, limit ${DEBOOTSTRAP_TIMEOUT_MS / 1000} s): ${why}`);
  }
  try {
    renameSync(tmp, SYSTEMD_ROOTFS);
  } catch (err) {
    // Another test run built it meanwhile: use theirs.
    rmSync(tmp, { recursive: true, force: true });
    if (!rootfsReady()) throw err;
  }
  return SYSTEMD_ROOTFS;
}

/** Every cgroup hierarchy mounted on the host (v1 controllers, name=systemd, cgroup2). */
function hierarchyMounts(mountsText: string): Array<{ mountPoint: string; v1: boolean }> {
  return mountsText
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f[2] === 'cgroup' || f[2] === 'cgroup2')
    .map((f) => ({ mountPoint: f[1], v1: f[2] === 'cgroup' }));
}

/** Creates rel (and each of extra below it) in every hierarchy; new v1 cpusets get their parent's cpus and mems. */
function makeCgroup(mountPoint: string, rel: string): string {
  let dir = mountPoint;
  for (const part of rel.split('/').filter(Boolean)) {
    const parent = dir;
    dir = join(dir, part);
    mkdirSync(dir, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(dir, file)) && readText(join(dir, file)).trim() === '') writeFileSync(join(dir, file), readText(join(parent, file)).trim());
    }
  }
  return dir;
}

/** Kills whatever is left in the cgroup trees and removes them, deepest first. */
function removeCgroupTrees(dirs: string[]): void {
  const walk = (dir: string): void => {
    for (const entry of listDir(dir, true)) walk(join(dir, entry));
    for (const pid of readText(join(dir, 'cgroup.procs')).split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        rmdirSync(dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        spawnSync('sleep', ['0.1']);
      }
    }
  };
  for (const dir of dirs) walk(dir);
}

export interface BootOptions {
  /** More systemd-nspawn arguments, e.g. --bind-ro=/usr to run the host's programs inside. */
  nspawnArgs?: string[];
}

export async function bootSystemd(options: BootOptions = {}): Promise<BootedSystemd> {
  const rootfs = ensureSystemdRootfs();
  const base = `/berth-systemd-${randomBytes(4).toString('hex')}`;
  const cgroupRoot = `${base}/payload`;
  const mounts = hierarchyMounts(readFileSync('/proc/self/mounts', 'utf8'));
  const cgroupDirs = mounts.map(({ mountPoint }) => makeCgroup(mountPoint, base));
  const procsFiles = mounts.map(({ mountPoint, v1 }) => join(makeCgroup(mountPoint, v1 && !mountPoint.endsWith('/systemd') ? cgroupRoot : base), 'cgroup.procs'));
  let output = '';
  // --volatile=overlay: the cached rootfs stays read-only (a tmpfs takes the writes), so
  // concurrent test runs share it.
  const child: ChildProcess = spawn(
    'sh',
    [
      '-c',
      'for f in $PROCS; do echo $$ > "$f"; done; exec systemd-nspawn --quiet --register=no --keep-unit --console=passive --volatile=overlay -D "$ROOTFS" "$@" -b',
      'boot',
      ...(options.nspawnArgs ?? []),
    ],
    { env: { ...process.env, ROOTFS: rootfs, PROCS: procsFiles.join(' ') }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM'); // nspawn asks the container's systemd to power off
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    removeCgroupTrees(cgroupDirs);
  };

  try {
    const pid = await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited ${child.exitCode}: ${output.trim()}`);
      // nspawn forks helpers of its own first: the container's PID 1 is the child that runs systemd.
      const children = readText(`/proc/${child.pid}/task/${child.pid}/children`).trim().split(/\s+/).filter(Boolean);
      const init = children.find((c) => readText(`/proc/${c}/comm`).trim() === 'systemd');
      return init ? Number(init) : undefined;
    }, 'systemd-nspawn to start the container');
    const socket = `/proc/${pid}/root/run/dbus/system_bus_socket`;
    await waitForState(socket, () => output);
    // See the header: make the v1 controllers writable for the container, then let systemd notice.
    for (const { mountPoint, v1 } of hierarchyMounts(readText(`/proc/${pid}/mounts`))) {
      if (!v1) continue;
      const r = spawnSync('nsenter', ['-t', String(pid), '-m', 'mount', '-o', 'remount,bind,rw', mountPoint], { encoding: 'utf8', timeout: 30_000 });
      if (r.status !== 0) throw new Error(`cannot remount ${mountPoint} read-write in the container: ${r.stderr.trim()}`);
    }
    const reexec = spawnSync('nsenter', ['-t', String(pid), '-a', 'systemctl', 'daemon-reexec'], { encoding: 'utf8', timeout: 60_000 });
    if (reexec.status !== 0) throw new Error(`systemctl daemon-reexec failed: ${reexec.stderr.trim()}`);
    await waitForState(socket, () => output);

    const exec = (args: string[]): string => {
      const r = spawnSync('nsenter', ['-t', String(pid), '-a', ...args], { encoding: 'utf8', timeout: 60_000 });
      if (r.status !== 0) throw new Error(`${args.join(' ')} in the systemd container: ${r.status} ${r.stderr.trim()}`);
      return r.stdout;
    };
    return {
      pid,
      socket,
      cgroupRoot,
      exec,
      startProcess: (args, logFile) => startInContainer(pid, mounts.map(({ mountPoint }) => join(makeCgroup(mountPoint, `${cgroupRoot}/berth-staging`), 'cgroup.procs')), args, logFile),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function startInContainer(pid: number, procsFiles: string[], args: string[], logFile?: string): { hostPid: number; pid: number; kill(): void } {
  // The shell joins a cgroup under the container's cgroup root in every hierarchy, then nsenter forks
  // into its namespaces: the process of interest is nsenter's child.
  const script = `for f in ${procsFiles.map((f) => `'${f}'`).join(' ')}; do echo $$ > "$f"; done; exec nsenter -t ${pid} -a "$@"`;
  const out = logFile ? openSync(logFile, 'a') : 'ignore';
  const holder = spawn('sh', ['-c', script, 'start', ...args], { stdio: ['ignore', out, out], detached: false });
  if (typeof out === 'number') closeSync(out);
  const deadline = Date.now() + 10_000;
  let hostPid: number | undefined;
  while (!hostPid && Date.now() < deadline) {
    const children = readText(`/proc/${holder.pid}/task/${holder.pid}/children`).trim().split(/\s+/).filter(Boolean);
    if (children.length) hostPid = Number(children[0]);
    else spawnSync('sleep', ['0.05']);
  }
  if (!hostPid) {
    holder.kill('SIGKILL');
    throw new Error(`${args.join(' ')} did not start in the container`);
  }
  const nspid = /^NSpid:\s+(.*)$/m.exec(readText(`/proc/${hostPid}/status`))?.[1].trim().split(/\s+/);
  if (!nspid) throw new Error(`no NSpid for ${hostPid}`);
  const child = hostPid;
  return {
    hostPid: child,
    pid: Number(nspid[nspid.length - 1]),
    kill: () => {
      for (const p of [child, holder.pid!]) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    },
  };
}

async function waitForState(socket: string, output: () => string): Promise<void> {
  let last = '';
  await waitFor(async () => {
    if (!existsSync(socket)) return undefined;
    let manager: SystemdManager | undefined;
    try {
      manager = await SystemdManager.connect({ socket });
      last = String(await manager.managerProperty('SystemState'));
      return last === 'running' || last === 'degraded' ? true : undefined;
    } catch (err) {
      last = (err as Error).message;
      return undefined;
    } finally {
      manager?.close();
    }
  }, () => `the container's systemd to finish booting (last: ${last}; nspawn: ${output().trim().slice(-500)})`, 180_000);
}

async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, what: string | (() => string), timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function listDir(dir: string, directoriesOnly = false): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => !directoriesOnly || e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}
