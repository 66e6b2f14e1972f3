// The berthd launcher (shim/berthd-launcher.ts): a /bin/sh script that execs
// Node.js with berthd's V8 flags on the bundle's runner, naming its code cache.
// Run for real here, on a stand-in entry that prints what Node.js was started with.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { launcherScript, writeLauncher } from '../../shim/berthd-launcher';
import { BERTHD_NODE_FLAGS } from '../../shim/node-flags';

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
