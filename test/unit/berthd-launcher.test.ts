// The berthd launcher (shim/berthd-launcher.ts): a /bin/sh script that execs
// Node.js with berthd's V8 flags on the bundle's runner, naming its code cache.
// Run for real here, on a stand-in entry that prints what Node.js was started with.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launcherScript, writeLauncher } from '../../shim/berthd-launcher';
import { checkSnapshot, clearPendingMarks, writeSnapshot } from '../../shim/bundle/snapshot-build';
import { recheckSnapshot } from '../../shim/bundle/snapshot-recheck';
import { BERTHD_MALLOC_ARENA_MAX, BERTHD_NODE_FLAGS } from '../../shim/node-flags';

const dir = mkdtempSync('/tmp/berth-launcher-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in berthd.js at a path a shell would split or unquote, printing its pid, Node's flags and its arguments. */
function standInEntry(): string {
  const entry = join(dir, "an entry's dir", 'berthd.js');
  mkdirSync(join(dir, "an entry's dir"), { recursive: true });
  writeFileSync(entry, 'process.stdout.write(JSON.stringify({ pid: process.pid, execArgv: process.execArgv, args: process.argv.slice(2), codeCache: process.env.BERTH_CODE_CACHE }));\n');
  return entry;
}

function run(file: string, args: string[]): Promise<{ childPid: number; out: { pid: number; execArgv: string[]; args: string[]; codeCache?: string } }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve({ childPid: child.pid ?? 0, out: JSON.parse(text) }) : reject(new Error(`exit ${code}: ${text}`))));
  });
}

test('the launcher runs Node.js with berthd\'s V8 flags and passes every argument through unchanged', async () => {
  const launcher = writeLauncher(join(dir, 'berthd'), standInEntry());
  const args = ['--config', '/etc/berth/berth.toml', 'a b', "it's", '$HOME', ''];
  const { out } = await run(launcher, args);
  assert.deepEqual(out.execArgv, [...BERTHD_NODE_FLAGS]);
  assert.deepEqual(out.args, args);
});

test('the launcher execs Node.js: berthd is the process its caller started (no shell left between)', async () => {
  const launcher = writeLauncher(join(dir, 'berthd-exec'), standInEntry());
  const { childPid, out } = await run(launcher, []);
  assert.equal(out.pid, childPid);
});

test('the launcher tells the runner where the code cache is, and names none unless given one', async () => {
  const cache = join(dir, "a cache's dir", 'berthd.code-cache');
  const { out } = await run(writeLauncher(join(dir, 'berthd-cache'), standInEntry(), { codeCache: cache }), []);
  assert.equal(out.codeCache, cache);
  const none = await run(writeLauncher(join(dir, 'berthd-no-cache'), standInEntry()), []);
  assert.equal(none.out.codeCache, undefined);
});

test('the launcher starts Node.js with one glibc malloc arena unless the environment names a number', () => {
  const entry = join(dir, 'arenas.js');
  writeFileSync(entry, 'process.stdout.write(String(process.env.MALLOC_ARENA_MAX));\n');
  const launcher = writeLauncher(join(dir, 'berthd-arenas'), entry);
  const started = (env: Record<string, string | undefined>): string => {
    const run = spawnSync(launcher, [], { encoding: 'utf8', env: { ...process.env, ...env } });
    assert.equal(run.status, 0, run.stderr);
    return run.stdout;
  };
  assert.equal(started({ MALLOC_ARENA_MAX: undefined }), String(BERTHD_MALLOC_ARENA_MAX));
  assert.equal(started({ MALLOC_ARENA_MAX: '' }), String(BERTHD_MALLOC_ARENA_MAX));
  assert.equal(started({ MALLOC_ARENA_MAX: '4' }), '4');
});

test('writeLauncher leaves a current launcher alone and replaces a stale one', () => {
  const entry = standInEntry();
  const path = writeLauncher(join(dir, 'berthd-twice'), entry);
  const first = statSync(path);
  writeLauncher(path, entry);
  assert.equal(statSync(path).ino, first.ino, 'an up-to-date launcher is not rewritten');
  writeFileSync(path, '#!/bin/sh\nexec node old.js "$@"\n');
  writeLauncher(path, entry);
  assert.equal(readFileSync(path, 'utf8'), launcherScript(entry));
  assert.equal(statSync(path).mode & 0o777, 0o755);
});

// Node's startup snapshot (shim/bundle/snapshot-build.ts): a real blob, built here with this Node and berthd's
// flags, under a launcher on a stand-in entry that says how it was started.
describe('the launcher and berthd\'s startup snapshot', () => {
  const snapDir = join(dir, 'snapshot');
  const blob = join(snapDir, 'berthd.snapshot');
  const cacheDir = join(snapDir, 'cache');
  let entry: string;
  before(() => {
    mkdirSync(cacheDir, { recursive: true });
    writeSnapshot(blob);
    entry = join(snapDir, 'entry.js');
    writeFileSync(
      entry,
      // A worker thread too: berthd's layer workers (a builtin the snapshot held broke them once).
      'const { Worker } = require("node:worker_threads");\n' +
        'const worker = new Worker("require(\'node:worker_threads\').parentPort.postMessage(process.cwd())", { eval: true });\n' +
        'worker.once("message", (cwd) => {\n' +
        '  void worker.terminate();\n' +
        '  process.stdout.write(JSON.stringify({ execArgv: process.execArgv, args: process.argv.slice(2), argv1: process.argv[1], main: require.main === module, workerCwd: cwd,\n' +
        '    why: process.env.BERTH_SNAPSHOT, pending: process.env.BERTH_SNAPSHOT_PENDING, marked: globalThis[Symbol.for("berth.snapshot")] !== undefined,\n' +
        '    recheck: process.env.BERTH_SNAPSHOT_RECHECK_BLOB && [process.env.BERTH_SNAPSHOT_RECHECK_BLOB, process.env.BERTH_SNAPSHOT_RECHECK_PENDING] }));\n' +
        '});\n',
    );
  });

  type Started = { execArgv: string[]; args: string[]; argv1: string; main: boolean; workerCwd: string; why?: string; pending?: string; marked: boolean; recheck?: [string, string] };
  const launch = async (name: string, options: { blob?: string; flags?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Started> => {
    const launcher = writeLauncher(join(snapDir, name), entry, { codeCache: join(cacheDir, 'berthd.code-cache'), snapshot: options.blob ?? blob, flags: options.flags });
    const child = spawnSync(launcher, ['--config', 'a b'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...options.env } });
    assert.equal(child.status, 0, child.stderr);
    return JSON.parse(child.stdout) as Started;
  };
  const pendingFiles = (): string[] => readdirSync(cacheDir).filter((name) => name.startsWith('berthd.snapshot-pending'));

  test('Node starts from the blob, whose main function runs the entry as the main module with berthd\'s arguments, and the pending file goes', async () => {
    const out = await launch('berthd-snap');
    assert.deepEqual(out.execArgv, [...BERTHD_NODE_FLAGS, '--snapshot-blob', blob]);
    assert.deepEqual(out.args, ['--config', 'a b']);
    assert.equal(out.argv1, entry);
    assert.equal(out.main, true);
    assert.equal(out.marked, true);
    assert.equal(out.workerCwd, process.cwd());
    assert.equal(out.why, undefined);
    assert.equal(out.pending, undefined, 'taken out of the environment');
    assert.deepEqual(pendingFiles(), []);
    // What the runner puts in the start record.
    assert.equal(checkSnapshot(blob).node, process.version);
  });

  test('without a usable blob Node starts as before, and the runner is told why', async () => {
    const cases: Array<[string, Parameters<typeof launch>[1], RegExp]> = [
      ['no blob', { blob: join(snapDir, 'missing.snapshot') }, /^no blob at /],
      ['NODE_OPTIONS', { env: { NODE_OPTIONS: '--max-old-space-size=100' } }, /^NODE_OPTIONS is set/],
      ['other flags', { flags: [...BERTHD_NODE_FLAGS, '--stack-size=900'] }, /V8 flags are not the snapshot's/],
    ];
    for (const [name, options, why] of cases) {
      const out = await launch(`berthd-${name.replace(/ /g, '-')}`, options);
      assert.ok(!out.execArgv.includes('--snapshot-blob'), name);
      assert.equal(out.marked, false, name);
      assert.match(out.why ?? '', why, name);
      assert.deepEqual(out.args, ['--config', 'a b'], name);
    }
    assert.deepEqual(pendingFiles(), []);
  });

  test('a blob changed since it was built, or built by another Node binary, is not used (Node would abort on it)', async () => {
    const changed = join(snapDir, 'changed.snapshot');
    copyFileSync(blob, changed);
    const bytes = readFileSync(changed);
    bytes.fill(0x5a, 4096, 8192);
    writeFileSync(changed, bytes);
    const out = await launch('berthd-changed', { blob: changed });
    assert.ok(!out.execArgv.includes('--snapshot-blob'));
    assert.match(out.why ?? '', /built by another Node\.js binary, or changed since/);
    // Another Node binary: a copy of this one, with its own modification time.
    const otherNode = join(snapDir, 'node');
    copyFileSync(process.execPath, otherNode);
    chmodSync(otherNode, 0o755);
    const launcher = writeLauncher(join(snapDir, 'berthd-other-node'), entry, { node: otherNode, codeCache: join(cacheDir, 'berthd.code-cache'), snapshot: blob });
    const other = JSON.parse(spawnSync(launcher, [], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } }).stdout) as Started;
    assert.match(other.why ?? '', /built by another Node\.js binary/);
  });

  test('a blob Node does not take (damaged, its time put back) costs one start: the next ones start without it and say why', async () => {
    const damaged = join(snapDir, 'damaged.snapshot');
    copyFileSync(blob, damaged);
    const bytes = readFileSync(damaged);
    // Its header kept, the rest garbage (Node aborts on it; some truncated blobs it even runs from).
    writeFileSync(damaged, Buffer.concat([bytes.subarray(0, 4096), Buffer.alloc(bytes.length - 4096, 0x5a)]));
    spawnSync('touch', ['-r', process.execPath, damaged]);
    const launcher = writeLauncher(join(snapDir, 'berthd-damaged'), entry, { codeCache: join(cacheDir, 'berthd.code-cache'), snapshot: damaged });
    const first = spawnSync(launcher, [], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    assert.notEqual(first.status, 0, `Node does not start from half a blob: ${first.stdout} ${first.stderr}`);
    assert.equal(pendingFiles().length, 1, `the failed start left its pending file: ${first.status} ${first.signal} ${first.stderr}`);
    for (let i = 0; i < 2; i++) {
      const out = JSON.parse(spawnSync(launcher, [], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } }).stdout) as Started;
      assert.ok(!out.execArgv.includes('--snapshot-blob'));
      assert.match(out.why ?? '', /an earlier start from it did not reach berthd's code/);
      // berthd is told which blob to check once it serves.
      assert.deepEqual(out.recheck, [damaged, join(cacheDir, 'berthd.snapshot-pending')]);
    }
    // That check: Node does not take this blob, so the pending file stays (and the snapshot stays off).
    const refused = await recheckSnapshot({ blob: damaged, pending: join(cacheDir, 'berthd.snapshot-pending') }, { flags: BERTHD_NODE_FLAGS });
    assert.equal(refused.taken, false);
    assert.equal(pendingFiles().length, 1);
    // A new blob (a build, an installation) clears the pending files: the snapshot is used again.
    clearPendingMarks(cacheDir);
    assert.equal((await launch('berthd-snap-again')).marked, true);
  });

  test('a start only killed before berthd\'s code ran costs one start: the check after it finds the blob good and removes the gone process\'s pending file', async () => {
    const gone = join(cacheDir, 'berthd.snapshot-pending.999999999');
    const live = join(cacheDir, `berthd.snapshot-pending.${process.pid}`);
    writeFileSync(gone, '');
    writeFileSync(live, '');
    try {
      const out = await launch('berthd-killed');
      assert.match(out.why ?? '', /an earlier start from it did not reach berthd's code/);
      assert.ok(out.recheck);
      const result = await recheckSnapshot({ blob: out.recheck[0], pending: out.recheck[1] }, { flags: BERTHD_NODE_FLAGS });
      assert.deepEqual(result, { taken: true, removed: [gone] });
      assert.deepEqual(pendingFiles(), [`berthd.snapshot-pending.${process.pid}`], 'a start still under way keeps its file');
      rmSync(live);
      assert.equal((await launch('berthd-killed')).marked, true);
    } finally {
      rmSync(live, { force: true });
      rmSync(gone, { force: true });
    }
  });

  test('a pending file of a start still under way does not keep the next start from the blob', async () => {
    writeFileSync(join(cacheDir, `berthd.snapshot-pending.${process.pid}`), '');
    try {
      assert.equal((await launch('berthd-beside')).marked, true);
    } finally {
      rmSync(join(cacheDir, `berthd.snapshot-pending.${process.pid}`), { force: true });
    }
  });
});
