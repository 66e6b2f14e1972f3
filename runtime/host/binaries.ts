// Finding the programs berth runs (conmon, runc, crun, criu) and asking their
// version: at start (host facts), in Status (readiness), in `berthd doctor` and
// `berthd version`. The async forms never block the event loop; a host root
// lets doctor look at a fixture tree instead of this machine.
import { execFile } from 'node:child_process';
import { accessSync, constants, promises as fsp } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** Where a bare name is looked up: PATH, then the usual system directories. */
export function searchDirs(extraDirs: readonly string[] = []): string[] {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin', ...extraDirs];
  return [...new Set(dirs.filter((d) => d.startsWith('/')))];
}

function candidates(name: string, hostRoot: string, extraDirs: readonly string[]): string[] {
  const inRoot = (p: string): string => (hostRoot === '/' ? p : join(hostRoot, p));
  return isAbsolute(name) ? [inRoot(name)] : searchDirs(extraDirs).map((d) => inRoot(join(d, name)));
}

/** Resolves a binary name against PATH (absolute paths are checked as they are); undefined when none is executable. */
export function findBinarySync(name: string, extraDirs: readonly string[] = []): string | undefined {
  for (const candidate of candidates(name, '/', extraDirs)) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

export async function findBinary(name: string, options: { hostRoot?: string; extraDirs?: readonly string[] } = {}): Promise<string | undefined> {
  for (const candidate of candidates(name, options.hostRoot ?? '/', options.extraDirs ?? [])) {
    try {
      await fsp.access(candidate, constants.X_OK);
      const stat = await fsp.stat(candidate);
      if (stat.isFile()) return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

export type BinaryProbe =
  | { name: string; found: false; problem: string }
  | { name: string; found: true; path: string; usable: false; problem: string }
  | { name: string; found: true; path: string; usable: true; versionText: string; version: string };

/** First line of `<binary> --version` (criu prints "Version: x"), bounded in time and size. */
export function runVersion(path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, ['--version'], { timeout: timeoutMs, maxBuffer: 64 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const how = err.killed ? `did not answer within ${timeoutMs} ms` : err.code !== undefined ? `exited with ${String(err.code)}` : err.message;
        reject(new Error(`${path} --version ${how}${stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
        return;
      }
      resolve(stdout.trim() || stderr.trim());
    });
  });
}

/** "runc version 1.1.5+ds1" -> "1.1.5+ds1"; "Version: 3.17.1" -> "3.17.1"; "" when there is none. */
export function versionOf(text: string): string {
  const first = text.split('\n')[0];
  return /(\d+\.\d+(?:\.\d+)?(?:[-+~][0-9A-Za-z.+~-]*)?)/.exec(first)?.[1] ?? '';
}

/** Versions already asked, by path and file identity: an unchanged binary is not run again. */
export type VersionCache = Map<string, { identity: string; versionText: string }>;

export interface ProbeOptions {
  hostRoot?: string;
  extraDirs?: readonly string[];
  timeoutMs?: number;
  cache?: VersionCache;
}

/** Finds `binary` and runs its --version: missing, present but unusable, or usable with its version. */
export async function probeBinary(name: string, binary: string, options: ProbeOptions = {}): Promise<BinaryProbe> {
  const path = await findBinary(binary, options);
  if (!path) {
    const where = isAbsolute(binary) ? `${binary} does not exist or is not executable` : `${binary} is not in ${searchDirs(options.extraDirs).join(':')}`;
    return { name, found: false, problem: where };
  }
  let identity = '';
  try {
    const st = await fsp.stat(path);
    identity = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    // gone between the lookup and now: --version below says so
  }
  const known = options.cache?.get(path);
  let versionText: string;
  if (known && identity && known.identity === identity) versionText = known.versionText;
  else {
    try {
      versionText = (await runVersion(path, options.timeoutMs)).split('\n')[0];
    } catch (err) {
      options.cache?.delete(path);
      return { name, found: true, path, usable: false, problem: (err as Error).message };
    }
    if (identity) options.cache?.set(path, { identity, versionText });
  }
  return { name, found: true, path, usable: true, versionText, version: versionOf(versionText) };
}

/** Compares dotted versions numerically ("1.1.12" > "1.1.5"); a pre-release ("1.4.0-rc.3") sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const split = (v: string): { nums: number[]; pre: string } => {
    const [core, ...rest] = v.split(/[+~]/)[0].split('-');
    return { nums: core.split('.').map((n) => Number.parseInt(n, 10) || 0), pre: rest.join('-') };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.nums.length, y.nums.length); i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  if (x.pre === y.pre) return 0;
  if (!x.pre) return 1;
  if (!y.pre) return -1;
  return x.pre.localeCompare(y.pre, 'en', { numeric: true });
}
