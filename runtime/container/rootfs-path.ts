// Paths berth confines below a directory it was given: the container log path
// below the pod's log directory. (Files inside an image or container rootfs are
// read through runtime/common/rootfs-file-reader.ts, which follows no link.)
import { lstatSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { invalidArgument } from '../errors';
import { logPathParts } from './container-request-validation';

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
