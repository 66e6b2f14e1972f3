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
// It also starts Node from berthd's startup snapshot (dist/shim/berthd.snapshot,
// shim/bundle/snapshot-build.ts: Node's builtins already loaded) when it can
// tell Node will accept it, since Node exits rather than start without a blob
// it refuses: the blob is there, was built by this Node binary (the blob has
// its modification time) with these flags, NODE_OPTIONS adds none, and no
// earlier start from it died before berthd's code ran (each start leaves a
// pending file beside the code cache until then; berthd, started without the
// blob for that reason, checks it after its start and removes the files when
// Node takes it: a start killed early costs one start). Otherwise it starts
// Node as before and tells the runner why (BERTH_SNAPSHOT, in the serving line).
// It also limits glibc's malloc arenas (MALLOC_ARENA_MAX, node-flags.ts) unless the environment sets them:
// read by glibc when the process starts, so only the environment Node is started with can say it.
//   node dist/shim/berthd-launcher.js [OUT [ENTRY [NODE [CODE_CACHE [SNAPSHOT]]]]]
//     OUT default dist/berthd, ENTRY default the runner, NODE default this Node.js,
//     CODE_CACHE default dist/shim/berthd.bundle.cache ('' for none),
//     SNAPSHOT default dist/shim/berthd.snapshot ('' for none)
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { SNAPSHOT_PATH } from './bundle/bundle-file';
import { CODE_CACHE_ENV, SNAPSHOT_ENV, SNAPSHOT_RECHECK_BLOB_ENV, SNAPSHOT_RECHECK_PENDING_ENV } from './bundle/code-cache';
import { SNAPSHOT_FLAGS, SNAPSHOT_PENDING_NAME } from './bundle/snapshot-build';
import { BERTHD_MALLOC_ARENA_MAX, BERTHD_NODE_FLAGS } from './node-flags';

/** The default launcher of this build: dist/berthd. */
export const DEV_LAUNCHER_PATH = resolve(__dirname, '..', 'berthd');
/** The bundle's runner: what a launcher starts. */
export const DEV_ENTRY_PATH = join(__dirname, 'bundle', 'bundle-runner.js');
/** The code cache of this build's launcher: beside the bundle (the build's own directory). */
export const DEV_CODE_CACHE_PATH = join(__dirname, 'berthd.bundle.cache');
/** The startup snapshot of this build's launcher (snapshot-build.ts writes it). */
export const DEV_SNAPSHOT_PATH = SNAPSHOT_PATH;

/** One word for /bin/sh, quoted only when it needs to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface LauncherOptions {
  node?: string;
  flags?: readonly string[];
  /** The code cache file ('' or undefined: none). */
  codeCache?: string;
  /** The startup snapshot blob ('' or undefined: none); its pending files go beside the code cache (else the blob). */
  snapshot?: string;
}

/** Why a launcher with these options names no snapshot, or undefined when it names one. */
function snapshotOff(node: string, flags: readonly string[], snapshot: string | undefined): string | undefined {
  if (!snapshot) return undefined;
  // The test of the Node binary needs its file; a blob is built with the snapshot's flags only.
  if (!isAbsolute(node)) return `the launcher names Node as ${node}, not by its path`;
  if (flags.join(' ') !== SNAPSHOT_FLAGS.join(' ')) return 'the launcher\'s V8 flags are not the snapshot\'s';
  return undefined;
}

export function launcherScript(entry: string, options: LauncherOptions = {}): string {
  const { node = process.execPath, flags = BERTHD_NODE_FLAGS, codeCache, snapshot } = options;
  const plain = `exec ${[node, ...flags, entry].map(shellWord).join(' ')} "$@"`;
  const lines = [
    '#!/bin/sh',
    '# berthd launcher (shim/berthd-launcher.ts): Node.js with berthd\'s V8 flags (shim/node-flags.ts)',
    '# on the bundle\'s runner (shim/bundle/bundle-runner.ts), with where its code cache is,',
    '# from berthd\'s startup snapshot when Node will take it.',
    `export MALLOC_ARENA_MAX="\${MALLOC_ARENA_MAX:-${BERTHD_MALLOC_ARENA_MAX}}"`,
    ...(codeCache ? [`export ${CODE_CACHE_ENV}=${shellWord(codeCache)}`] : []),
  ];
  const off = snapshotOff(node, flags, snapshot);
  if (!snapshot || off) {
    if (off) lines.push(`export ${SNAPSHOT_ENV}=${shellWord(off)}`);
    return [...lines, plain, ''].join('\n');
  }
  const pending = join(dirname(codeCache || snapshot), SNAPSHOT_PENDING_NAME);
  // No command here forks: each test is a shell builtin (dash compares modification times to the nanosecond).
  lines.push(
    `blob=${shellWord(snapshot)} node=${shellWord(node)} pending=${shellWord(pending)}`,
    'why=',
    'if [ -n "${NODE_OPTIONS-}" ]; then why=\'NODE_OPTIONS is set (its V8 flags would make Node refuse the blob)\'',
    'elif ! [ -f "$blob" ]; then why="no blob at $blob"',
    'elif [ "$blob" -nt "$node" ] || [ "$blob" -ot "$node" ]; then why=\'the blob was built by another Node.js binary, or changed since\'',
    'else',
    '  for mark in "$pending".*; do',
    '    # A pending file whose process is gone: a start Node refused, or that died before berthd\'s code ran.',
    '    if [ -e "$mark" ] && ! [ -d "/proc/${mark##*.}" ]; then why="an earlier start from it did not reach berthd\'s code ($mark)"; fi',
    '  done',
    '  # Or it was only killed early: berthd checks the blob once it serves, and removes such files when Node takes it.',
    `  [ -n "$why" ] && export ${SNAPSHOT_RECHECK_BLOB_ENV}="$blob" ${SNAPSHOT_RECHECK_PENDING_ENV}="$pending"`,
    '  if [ -z "$why" ]; then',
    '    if true 2>/dev/null >"$pending.$$"; then',
    `      export BERTH_SNAPSHOT_PENDING="$pending.$$"`,
    `      exec ${[node, ...flags].map(shellWord).join(' ')} --snapshot-blob "$blob" ${shellWord(entry)} "$@"`,
    '    fi',
    '    why="cannot write $pending.$$"',
    '  fi',
    'fi',
    `export ${SNAPSHOT_ENV}="$why"`,
    plain,
    '',
  );
  return lines.join('\n');
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
  const [out = DEV_LAUNCHER_PATH, entry = DEV_ENTRY_PATH, node = process.execPath, codeCache = DEV_CODE_CACHE_PATH, snapshot = DEV_SNAPSHOT_PATH] = process.argv.slice(2);
  writeLauncher(resolve(out), resolve(entry), { node, codeCache: codeCache && resolve(codeCache), snapshot: snapshot && resolve(snapshot) });
}
