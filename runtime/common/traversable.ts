// A container in its pod's user namespace runs as an unprivileged host uid:
// runc, already inside that namespace, must still walk from / to the rootfs,
// the prepared mounts and the pod's files. berth's own directories on those
// paths get search permission for everyone (0711 like containerd's root: no
// listing, no reading), added only when such a pod exists.
import { chmodSync, statSync } from 'node:fs';

/** Adds execute (search) permission for group and others to each directory. */
export function allowTraversal(dirs: readonly string[]): void {
  for (const dir of dirs) {
    const mode = statSync(dir).mode & 0o7777;
    if ((mode & 0o011) !== 0o011) chmodSync(dir, mode | 0o011);
  }
}
