// berthd as it starts everywhere: the launcher on the bundle's runner
// (shim/bundle/), with V8's code cache berthd writes after a start and uses at
// the next; and berthd's commands run from the bundle too.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEV_ENTRY_PATH, DEV_SNAPSHOT_PATH, writeLauncher } from '../../shim/berthd-launcher';
import { BERTHD_NODE_FLAGS } from '../../shim/node-flags';
import { BERTHD_ENTRY, BerthdProcess } from '../support/berthd-process';

/** The serving line's account of how berthd's code started, from the log after `from`. */
async function servingStart(berthd: BerthdProcess, from: number): Promise<{ bundle: string; codeCache?: string; snapshot?: string }> {
  const line = await berthd.waitForLog(/\{[^\n]*"msg":"berthd serving CRI v1"[^\n]*\}/, 30_000, from);
  return (JSON.parse(line) as { start: { bundle: string; codeCache?: string; snapshot?: string } }).start;
}

describe('berthd from its bundle, with the code cache', () => {
  const dir = mkdtempSync('/tmp/berth-bundle-it-');
  const cache = join(dir, 'cache', 'berthd.code-cache');
  const launcher = writeLauncher(join(dir, 'berthd'), DEV_ENTRY_PATH, { codeCache: cache });
  let berthd: BerthdProcess;
  before(() => {
    berthd = new BerthdProcess({ command: [launcher], topLevel: { log_format: 'json' } });
  });
  after(async () => {
    await berthd.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('berthd serves CRI from the bundle, writes the code cache after its start and uses it at the next start', async () => {
    await berthd.start(30_000);
    const first = await servingStart(berthd, 0);
    assert.equal(first.bundle, 'used');
    assert.equal(first.codeCache, 'none yet');
    assert.equal((await berthd.client.call('Version', { version: '0.1.0' })).runtime_name, 'berth');
    await berthd.waitForLog(/code cache written for the next start/);
    assert.ok(existsSync(cache));
    await berthd.stop();
    const from = berthd.logs().length;
    await berthd.start(30_000);
    const start = await servingStart(berthd, from);
    assert.equal(start.bundle, 'used');
    assert.equal(start.codeCache, 'used');
    assert.equal((await berthd.client.call('Status', {})).status?.conditions?.length, 2);
    await berthd.stop();
  });

  test('a code cache V8 refuses (made under other V8 flags, or damaged) is ignored: berthd serves and writes a new one', async () => {
    const otherFlags = writeLauncher(join(dir, 'berthd-other-flags'), DEV_ENTRY_PATH, { codeCache: cache, flags: [...BERTHD_NODE_FLAGS, '--stack-size=900'] });
    const other = new BerthdProcess({ command: [otherFlags], topLevel: { log_format: 'json' } });
    try {
      await other.start(30_000);
      assert.equal((await servingStart(other, 0)).codeCache, 'rejected by V8');
      await other.waitForLog(/code cache written for the next start/);
      await other.stop();
      const file = readFileSync(cache);
      writeFileSync(cache, Buffer.concat([file.subarray(0, 65), Buffer.alloc(file.length - 65, 0x5a)]));
      const from = other.logs().length;
      await other.start(30_000);
      assert.equal((await servingStart(other, from)).codeCache, 'rejected by V8');
      assert.equal((await other.client.call('Version', { version: '0.1.0' })).runtime_name, 'berth');
    } finally {
      await other.cleanup();
    }
  });
});

describe('berthd from Node\'s startup snapshot (dist/shim/berthd.snapshot)', () => {
  const dir = mkdtempSync('/tmp/berth-snapshot-it-');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('berthd started through the build\'s launcher (dist/berthd) starts from the snapshot and serves', async () => {
    const berthd = new BerthdProcess({ topLevel: { log_format: 'json' } });
    try {
      await berthd.start(30_000);
      const start = await servingStart(berthd, 0);
      assert.equal(start.snapshot, 'used');
      assert.equal(start.bundle, 'used');
      assert.equal((await berthd.client.call('Version', { version: '0.1.0' })).runtime_name, 'berth');
    } finally {
      await berthd.cleanup();
    }
  });

  test('a blob changed since the build is not used: berthd starts as before, serves, and says why', async () => {
    const blob = join(dir, 'berthd.snapshot');
    copyFileSync(DEV_SNAPSHOT_PATH, blob);
    const bytes = readFileSync(blob);
    writeFileSync(blob, Buffer.concat([bytes.subarray(0, 4096), Buffer.alloc(bytes.length - 4096, 0x5a)]));
    const launcher = writeLauncher(join(dir, 'berthd'), DEV_ENTRY_PATH, { codeCache: join(dir, 'berthd.code-cache'), snapshot: blob });
    const berthd = new BerthdProcess({ command: [launcher], topLevel: { log_format: 'json' } });
    try {
      await berthd.start(30_000);
      assert.match((await servingStart(berthd, 0)).snapshot ?? '', /^not used: the blob was built by another Node\.js binary, or changed since/);
      assert.equal((await berthd.client.call('Status', {})).status?.conditions?.length, 2);
    } finally {
      await berthd.cleanup();
    }
  });
});

describe('berthd after a start from the snapshot that never reached its code', () => {
  const dir = mkdtempSync('/tmp/berth-snapshot-recheck-it-');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('berthd starts without the blob, checks it once serving, and the next start uses it again', async () => {
    // What a start killed before berthd's code ran leaves (its process is gone).
    const stale = join(dir, 'berthd.snapshot-pending.999999999');
    writeFileSync(stale, '');
    const launcher = writeLauncher(join(dir, 'berthd'), DEV_ENTRY_PATH, { codeCache: join(dir, 'berthd.code-cache'), snapshot: DEV_SNAPSHOT_PATH });
    const berthd = new BerthdProcess({ command: [launcher], topLevel: { log_format: 'json', log_level: 'info' } });
    try {
      await berthd.start(30_000);
      assert.match((await servingStart(berthd, 0)).snapshot ?? '', /^not used: an earlier start from it did not reach berthd's code/);
      await berthd.waitForLog(/startup snapshot checked: Node takes it/, 30_000);
      assert.ok(!existsSync(stale));
      await berthd.stop();
      const from = berthd.logs().length;
      await berthd.start(30_000);
      assert.equal((await servingStart(berthd, from)).snapshot, 'used');
    } finally {
      await berthd.cleanup();
    }
  });
});

test('berthd\'s commands run from the bundle: Node loads none of berthd\'s compiled modules itself', () => {
  const dir = mkdtempSync('/tmp/berth-bundle-cli-');
  const config = join(dir, 'berth.toml');
  writeFileSync(config, 'log_level = "warn"\n');
  const commands = [['version', '--json'], ['config', 'default'], ['config', 'check', config]];
  try {
    for (const args of commands) {
      const r = spawnSync(process.execPath, [BERTHD_ENTRY, ...args], { encoding: 'utf8', env: { ...process.env, NODE_DEBUG: 'module' } });
      const loadedByNode = [...r.stderr.matchAll(/^MODULE \d+: load "([^"]+)"/gm)].map((m) => m[1]).filter((path) => path.includes('/dist/'));
      assert.deepEqual(
        loadedByNode.filter((path) => !/\/dist\/shim\/bundle\/(bundle-runner|bundle-file|code-cache)\.js$/.test(path)),
        [],
        `berthd ${args.join(' ')}`,
      );
      if (args[0] === 'version') assert.match((JSON.parse(r.stdout) as { berth: { version: string } }).berth.version, /^\d+\.\d+\.\d+/);
      if (args[0] === 'config' && args[1] === 'default') assert.match(r.stdout, /^socket = /m);
      if (args[1] === 'check') assert.match(r.stdout, /^log_level = "warn"/m);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a command whose reader has gone (`berthd config default | head -1`) ends quietly, not with an unhandled EPIPE', async () => {
  // The read end is closed before berthd has started, so its first write meets a closed pipe.
  const child = spawn(process.execPath, [BERTHD_ENTRY, 'config', 'default'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
});
