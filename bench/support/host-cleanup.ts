// Undoing what a runtime left on the host after the benchmark stopped it:
// mounts below its directories, its CNI bridge, its cgroup parent. Each step
// only touches names the benchmark chose, so nothing else on the host is hit.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(' ')[4]))
    .filter((mp) => mp === dir || mp.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `dir` (lazily when busy); returns what it unmounted. */
export function unmountUnder(dir: string): string[] {
  const done: string[] = [];
  for (let round = 0; round < 5; round++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    for (const mp of mounts) {
      try {
        execFileSync('umount', [mp], { stdio: 'ignore' });
        done.push(mp);
      } catch {
        try {
          execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
          done.push(mp);
        } catch {
          // already gone with its parent, or not ours to force
        }
      }
    }
  }
  return done;
}

export function deleteLink(name: string): void {
  if (!existsSync(`/sys/class/net/${name}`)) return;
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  } catch {
    // gone meanwhile
  }
}

/** Removes the (empty) cgroup directories `relative` under every mounted hierarchy, deepest first. */
export function removeCgroupTree(relative: string): void {
  const base = '/sys/fs/cgroup';
  if (!existsSync(base)) return;
  const hierarchies = readdirSync(base).map((h) => join(base, h));
  for (const h of hierarchies) {
    const top = join(h, relative);
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = (d: string, depth: number): void => {
      if (depth > 8) return;
      dirs.push(d);
      for (const entry of readdirSync(d, { withFileTypes: true })) if (entry.isDirectory()) walk(join(d, entry.name), depth + 1);
    };
    try {
      walk(top, 0);
    } catch {
      continue;
    }
    for (const d of dirs.sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(d);
      } catch {
        // still has processes, or a symlinked hierarchy already removed it
      }
    }
  }
}

/** PIDs whose command line contains `needle` as one argument (e.g. a shim's -address <our socket>). */
export function pidsWithArgument(needle: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes(needle)) out.push(Number(entry));
    } catch {
      // exited
    }
  }
  return out;
}

/**
 * Force-deletes every runc container whose state lives below `dir` (runc
 * keeps <root>/<id>/state.json): what a crashed daemon left running. A
 * clean run finds none.
 */
export function forceDeleteRuncContainers(dir: string, runc = 'runc'): string[] {
  const deleted: string[] = [];
  const visit = (d: string, depth: number): void => {
    if (depth > 4) return;
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const child = join(d, entry.name);
      if (existsSync(join(child, 'state.json'))) {
        try {
          execFileSync(runc, ['--root', d, 'delete', '--force', entry.name], { stdio: 'ignore', timeout: 30_000 });
          deleted.push(entry.name);
        } catch {
          // already gone
        }
      } else visit(child, depth + 1);
    }
  };
  visit(dir, 0);
  return deleted;
}
