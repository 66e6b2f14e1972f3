// The mount points of berthd's mount namespace, from /proc/self/mountinfo. A
// recursive removal crosses mount points: removing a directory that still has
// a container's rootfs (or a bind of a host directory) mounted on or below it
// would delete what the mount shows. Every tree berth removes that could hold
// a mount is checked here first.
import { promises as fsp } from 'node:fs';
import { resolve, sep } from 'node:path';

/** mountinfo escapes space, tab, newline and backslash in paths as \ooo. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

function escapeMountPath(path: string): string {
  return path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/**
 * The mount points (field 5) in mountinfo text that are one of `roots` or lie
 * below one. Only the lines that name a root are split: with a hundred pods
 * the table has ~700 lines, and the callers (a removal, the writable-layer
 * meter every second) ask about a few directories of berth's own.
 */
export function mountPointsWithin(mountinfo: string, roots: Iterable<string>): Set<string> {
  const found = new Set<string>();
  for (const root of roots) {
    const dir = resolve(root);
    const below = dir.endsWith(sep) ? dir : `${dir}${sep}`;
    // A line naming the root has it after a space (field 4 or 5); which field it was is checked below.
    const needle = ` ${escapeMountPath(dir)}`;
    let at = mountinfo.indexOf(needle);
    while (at !== -1) {
      const lineStart = mountinfo.lastIndexOf('\n', at) + 1;
      const newline = mountinfo.indexOf('\n', at);
      const lineEnd = newline === -1 ? mountinfo.length : newline;
      const field = mountinfo.slice(lineStart, lineEnd).split(' ')[4];
      if (field) {
        const mountPoint = unescapeMountPath(field);
        if (mountPoint === dir || mountPoint.startsWith(below)) found.add(mountPoint);
      }
      at = newline === -1 ? -1 : mountinfo.indexOf(needle, lineEnd);
    }
  }
  return found;
}

/** Mount points at `path` or below it (none: the tree can be removed without reaching into a mount). */
export async function mountPointsAtOrBelow(path: string, mountinfoPath = '/proc/self/mountinfo'): Promise<string[]> {
  const text = await fsp.readFile(mountinfoPath, 'utf8');
  return [...mountPointsWithin(text, [path])];
}

/**
 * Removes a tree unless something is mounted on or below it; resolves with the mount points
 * found (empty when it was removed, or was not there).
 */
export async function removeTreeUnlessMounted(path: string): Promise<string[]> {
  const mounted = await mountPointsAtOrBelow(path);
  if (mounted.length > 0) return mounted;
  await fsp.rm(path, { recursive: true, force: true });
  return [];
}
