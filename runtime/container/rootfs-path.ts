// Resolving a path inside a container root filesystem the way the kernel would
// inside the container: symlinks are followed relative to the rootfs, and ".."
// or an absolute link never climbs out of it. Image content is untrusted; a
// link like /etc/passwd -> /host/etc/shadow must resolve under the rootfs.
import { lstatSync, readlinkSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { invalidArgument } from '../errors';
import { logPathParts } from './container-request-validation';

const MAX_SYMLINKS = 40;

/**
 * Host path of `path` as seen inside `root`. Missing trailing components are
 * allowed (the result then names where they would be created).
 */
export function resolveInRoot(root: string, path: string): string {
  const rootAbs = resolvePath(root);
  const pending = path.split('/').filter((part) => part && part !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(rootAbs, ...resolved, part);
    let isLink = false;
    try {
      isLink = lstatSync(candidate).isSymbolicLink();
    } catch {
      // Missing: the rest is taken literally.
      resolved.push(part);
      continue;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw invalidArgument(`too many symbolic links resolving ${path} in the container root`);
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter((p) => p && p !== '.'));
  }
  return join(rootAbs, ...resolved);
}

/**
 * A log path under a directory: relative, no ".." (logPathParts), and no
 * existing symlink anywhere from the directory down (a link could point
 * conmon's writes at any file on the host).
 */
export function confineLogPath(logDirectory: string, logPath: string): string {
  const parts = logPathParts(logPath);
  const full = join(logDirectory, ...parts);
  let current = resolvePath(logDirectory);
  for (const part of ['', ...parts]) {
    if (part) current = join(current, part);
    try {
      if (lstatSync(current).isSymbolicLink()) {
        throw invalidArgument(`config.log_path: "${current}" is a symbolic link; log paths may not contain links`);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
      throw err;
    }
  }
  return full;
}
