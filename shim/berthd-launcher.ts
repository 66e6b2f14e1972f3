// The berthd launcher: a /bin/sh script that execs Node.js with berthd's V8
// flags (node-flags.ts) on berthd's entry. Every way of starting berthd uses
// one: the README's quick start (dist/berthd, written by `npm run build`), the
// installed service (scripts/install.sh writes one naming the installed
// files), bench/ and the tests' BerthdProcess; so the flags have this one
// source. `exec`, not a child: berthd is the process its caller started
// (systemd's main PID, the PID a test signals), and no second Node.js starts.
//
// The entry is the bundle's runner (shim/bundle/bundle-runner.ts): it runs
// dist/shim/berthd.bundle.js, berthd's modules in one file compiled with V8's
// code cache, and falls back to the compiled modules (dist/shim/berthd.js)
// when the bundle is missing or older than them. A restart was mostly Node
// finding, reading and compiling ~280 files (bench/README.md, "Start time").
// The launcher names the code cache (BERTH_CODE_CACHE, which the runner takes
// out of the environment): berthd writes it after a start that had none, or
// had one made for another bundle, Node or flags; beside the bundle for a
// build, under /var/cache/berth for an installation (install.sh).
//   node dist/shim/berthd-launcher.js [OUT [ENTRY [NODE [CODE_CACHE]]]]
//     OUT default dist/berthd, ENTRY default the runner, NODE default this Node.js,
//     CODE_CACHE default dist/shim/berthd.bundle.cache ('' for none)
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CODE_CACHE_ENV } from './bundle/code-cache';
import { BERTHD_NODE_FLAGS } from './node-flags';

/** The default launcher of this build: dist/berthd. */
export const DEV_LAUNCHER_PATH = resolve(__dirname, '..', 'berthd');
/** The bundle's runner: what a launcher starts. */
export const DEV_ENTRY_PATH = join(__dirname, 'bundle', 'bundle-runner.js');
/** The code cache of this build's launcher: beside the bundle (the build's own directory). */
export const DEV_CODE_CACHE_PATH = join(__dirname, 'berthd.bundle.cache');

/** One word for /bin/sh, quoted only when it needs to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface LauncherOptions {
  node?: string;
  flags?: readonly string[];
  /** The code cache file ('' or undefined: none). */
  codeCache?: string;
}

export function launcherScript(entry: string, options: LauncherOptions = {}): string {
  const { node = process.execPath, flags = BERTHD_NODE_FLAGS, codeCache } = options;
  return [
    '#!/bin/sh',
    '# berthd launcher (shim/berthd-launcher.ts): Node.js with berthd\'s V8 flags (shim/node-flags.ts)',
    '# on the bundle\'s runner (shim/bundle/bundle-runner.ts), with where its code cache is.',
    ...(codeCache ? [`export ${CODE_CACHE_ENV}=${shellWord(codeCache)}`] : []),
    `exec ${[node, ...flags, entry].map(shellWord).join(' ')} "$@"`,
    '',
  ].join('\n');
}

/** Writes the launcher (mode 0755) unless it is already there as it would be written; atomically. */
export function writeLauncher(out: string, entry: string, options: LauncherOptions = {}): string {
  const script = launcherScript(entry, options);
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
  const [out = DEV_LAUNCHER_PATH, entry = DEV_ENTRY_PATH, node = process.execPath, codeCache = DEV_CODE_CACHE_PATH] = process.argv.slice(2);
  writeLauncher(resolve(out), resolve(entry), { node, codeCache: codeCache && resolve(codeCache) });
}
