// The berthd launcher: a /bin/sh script that execs Node.js with berthd's V8
// flags (node-flags.ts) on berthd.js. Every way of starting berthd uses one:
// the README's quick start (dist/berthd, written by `npm run build`), the
// installed service (scripts/install.sh writes one naming the installed
// files), bench/ and the tests' BerthdProcess; so the flags have this one
// source. `exec`, not a child: berthd is the process its caller started
// (systemd's main PID, the PID a test signals), and no second Node.js starts.
//   node dist/shim/berthd-launcher.js [OUT [ENTRY [NODE]]]
//     OUT default dist/berthd, ENTRY default dist/shim/berthd.js, NODE default this Node.js
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BERTHD_NODE_FLAGS } from './node-flags';

/** The default launcher of this build: dist/berthd. */
export const DEV_LAUNCHER_PATH = resolve(__dirname, '..', 'berthd');
export const DEV_ENTRY_PATH = join(__dirname, 'berthd.js');

/** One word for /bin/sh, quoted only when it needs to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function launcherScript(entry: string, node: string = process.execPath, flags: readonly string[] = BERTHD_NODE_FLAGS): string {
  return [
    '#!/bin/sh',
    '# berthd launcher (shim/berthd-launcher.ts): Node.js with berthd\'s V8 flags (shim/node-flags.ts).',
    `exec ${[node, ...flags, entry].map(shellWord).join(' ')} "$@"`,
    '',
  ].join('\n');
}

/** Writes the launcher (mode 0755) unless it is already there as it would be written; atomically. */
export function writeLauncher(out: string, entry: string, node: string = process.execPath): string {
  const script = launcherScript(entry, node);
  let current = '';
  try {
    current = readFileSync(out, 'utf8');
  } catch {
    // not written yet
  }
  if (current !== script) {
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, script, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, out);
  }
  return out;
}

if (require.main === module) {
  const [out = DEV_LAUNCHER_PATH, entry = DEV_ENTRY_PATH, node = process.execPath] = process.argv.slice(2);
  writeLauncher(resolve(out), resolve(entry), node);
}
