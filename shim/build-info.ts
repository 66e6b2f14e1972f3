// Which berth this is: the version and git commit recorded at build time
// (dist/shim/build-info.json, written by scripts/build-info.js), or, for a tree
// compiled with a bare tsc, read from package.json and .git directly.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

export interface BuildInfo {
  version: string;
  commit: string;
  /** Where the commit came from: the build record, the git directory, or nowhere. */
  source: 'build' | 'git' | 'unknown';
}

/** dist/shim -> the repository (or install) root. */
const ROOT = join(__dirname, '..', '..');

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** HEAD's commit from the files of a git directory (a worktree's .git is a file naming its gitdir). */
export function commitFromGit(root: string): string | undefined {
  let gitDir = join(root, '.git');
  const pointer = readText(gitDir);
  if (pointer?.startsWith('gitdir: ')) gitDir = isAbsolute(pointer.slice(8)) ? pointer.slice(8) : join(root, pointer.slice(8));
  const head = readText(join(gitDir, 'HEAD'));
  if (!head) return undefined;
  if (!head.startsWith('ref: ')) return head;
  const ref = head.slice(5);
  const common = readText(join(gitDir, 'commondir'));
  const dirs = [gitDir, ...(common ? [isAbsolute(common) ? common : join(gitDir, common)] : [])];
  for (const dir of dirs) {
    const loose = readText(join(dir, ref));
    if (loose) return loose;
    const packed = readText(join(dir, 'packed-refs'))?.split('\n').find((line) => line.endsWith(` ${ref}`));
    if (packed) return packed.split(' ')[0];
  }
  return undefined;
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const recorded = readJson<{ version?: string; commit?: string }>(join(__dirname, 'build-info.json'));
  const version = recorded?.version ?? readJson<{ version?: string }>(join(ROOT, 'package.json'))?.version ?? '0.0.0';
  if (recorded?.commit && recorded.commit !== 'unknown') cached = { version, commit: recorded.commit, source: 'build' };
  else {
    const commit = commitFromGit(ROOT);
    cached = commit ? { version, commit, source: 'git' } : { version, commit: 'unknown', source: 'unknown' };
  }
  return cached;
}
