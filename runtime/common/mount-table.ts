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

/** The mount points (field 5) listed in mountinfo text. */
export function parseMountPoints(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field) out.push(unescapeMountPath(field));
  }
  return out;
}

/** Mount points at `path` or below it (none: the tree can be removed without reaching into a mount). */
export async function mountPointsAtOrBelow(path: string, mountinfoPath = '/proc/self/mountinfo'): Promise<string[]> {
  const dir = resolve(path);
  const prefix = dir.endsWith(sep) ? dir : `${dir}${sep}`;
  const text = await fsp.readFile(mountinfoPath, 'utf8');
  return parseMountPoints(text).filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(prefix));
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
