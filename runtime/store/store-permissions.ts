// berth's store directories hold image content (setuid binaries, device nodes)
// and container state: a host user who can reach them can run or read what an
// image brings (the CVE-2021-41103 class). At every start the root and the
// state dir are made root-owned with no access for others beyond search
// (0711 at most: containerd's root mode, and what a user-namespaced pod's runc
// needs to walk to its bundle), and layers/ is made 0700, so no layer is
// reachable even by a path guessed from a public digest. A directory that
// already exists with a wider mode or another owner is fixed, and logged; one
// that cannot be fixed stops berthd with a line saying what to do.
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeLog } from '../common/log';
import { describeError } from '../errors';

export interface StoreDirRule {
  path: string;
  /** The widest mode allowed (bits outside it are taken away). */
  maxMode: number;
  /** What the directory is, for the log and the refusal. */
  what: string;
}

/** The directories whose mode and owner are enforced at every start, parents first. */
export function storeDirRules(config: { root: string; state: string }): StoreDirRule[] {
  return [
    { path: config.root, maxMode: 0o711, what: 'root (persistent store)' },
    { path: config.state, maxMode: 0o711, what: 'state (volatile store)' },
    { path: join(config.root, 'layers'), maxMode: 0o700, what: 'unpacked image layers' },
  ];
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/**
 * Creates each directory (with its mode) or brings an existing one to the
 * rule: owned by berthd's user and group, no mode bit beyond maxMode. Throws
 * one readable error for the first directory that cannot be made so.
 */
export function enforceStorePermissions(rules: readonly StoreDirRule[], log: RuntimeLog): void {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  for (const rule of rules) {
    mkdirSync(rule.path, { recursive: true, mode: rule.maxMode });
    const before = statSync(rule.path);
    if (!before.isDirectory()) throw new Error(`store: ${rule.path} (${rule.what}) is not a directory`);
    const mode = before.mode & 0o7777;
    const wantedMode = mode & rule.maxMode;
    const fixes: string[] = [];
    try {
      if (before.uid !== uid || before.gid !== gid) {
        chownSync(rule.path, uid, gid);
        fixes.push(`owner ${before.uid}:${before.gid} -> ${uid}:${gid}`);
      }
      if (mode !== wantedMode) {
        chmodSync(rule.path, wantedMode);
        fixes.push(`mode ${octal(mode)} -> ${octal(wantedMode)}`);
      }
    } catch (err) {
      throw new Error(
        `store: ${rule.path} (${rule.what}) is mode ${octal(mode)} owned by ${before.uid}:${before.gid} and cannot be made ${uid}:${gid} ${octal(wantedMode)} ` +
          `(${describeError(err)}): host users could reach image content through it; run "chown ${uid}:${gid} ${rule.path} && chmod ${octal(wantedMode)} ${rule.path}" or point the config at another directory`,
      );
    }
    const after = statSync(rule.path);
    if (after.uid !== uid || after.gid !== gid || (after.mode & 0o7777 & ~rule.maxMode) !== 0) {
      throw new Error(`store: ${rule.path} (${rule.what}) is still mode ${octal(after.mode)} owned by ${after.uid}:${after.gid} after fixing it; berthd will not serve from it`);
    }
    if (fixes.length > 0) log.warn({ path: rule.path, fixes }, `store: ${rule.path} (${rule.what}) was too open; fixed: ${fixes.join(', ')}`);
  }
}
