// The control-file reader of the stats calls: many small files read by the
// addon on a pool thread (readSmallFiles), and the batcher that groups the
// files asked for in one turn of the event loop.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../native';
import { ControlFileBatcher } from '../../runtime/cgroups/control-file-reader';

const native = loadNative();

test('readSmallFiles answers each regular file\'s text in order, null for a missing file, a directory or a FIFO (without blocking on it)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-small-files-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a'), 'usage 12\n');
  writeFileSync(join(dir, 'empty'), '');
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  const texts = await native.readSmallFiles([join(dir, 'a'), join(dir, 'missing'), dir, join(dir, 'fifo'), join(dir, 'empty'), '/proc/self/status'], 4096);
  assert.deepEqual(texts.slice(0, 5), ['usage 12\n', null, null, null, '']);
  assert.match(texts[5] ?? '', /^Name:/);
});

/** Field 19 of a /proc/.../stat text: the nice value of that thread. */
function niceOf(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

test('a background batch is read at nice 10, and its pool thread is back at its own priority afterwards; a plain batch keeps it', async () => {
  const own = niceOf(readFileSync('/proc/self/stat', 'utf8'));
  const [background] = await native.readSmallFiles(['/proc/thread-self/stat'], 4096, true);
  const [plain] = await native.readSmallFiles(['/proc/thread-self/stat'], 4096);
  assert.equal(niceOf(background ?? ''), Math.max(own, 10), 'the background batch\'s thread while it read');
  assert.equal(niceOf(plain ?? ''), own, 'a plain batch\'s thread');
  for (const tid of readdirSync('/proc/self/task')) {
    assert.equal(niceOf(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')), own, `thread ${tid} after the batches`);
  }
});

test('readSmallFiles reads at most maxBytes of a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-small-files-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'big'), 'x'.repeat(10_000));
  symlinkSync(join(dir, 'big'), join(dir, 'link'));
  assert.deepEqual(await native.readSmallFiles([join(dir, 'big'), join(dir, 'link')], 100), ['x'.repeat(100), 'x'.repeat(100)]);
});

test('readSmallFiles refuses what is not a list of paths with a TypeError', () => {
  assert.throws(() => native.readSmallFiles([1 as unknown as string], 10), TypeError);
  assert.throws(() => native.readSmallFiles([], -1), RangeError);
});

test('the batcher sends the files asked for in one turn together, in batches of at most maxBatch, and resolves each with its own text', async () => {
  const calls: string[][] = [];
  const fake = {
    readSmallFiles: async (paths: string[]) => {
      calls.push(paths);
      return paths.map((p) => (p.startsWith('missing') ? null : `text of ${p}`));
    },
  };
  const batcher = new ControlFileBatcher(fake, 3, 2);
  const files = ['a', 'b', 'missing-c', 'd', 'e'];
  const texts = await Promise.all(files.map((f) => batcher.read(f)));
  assert.deepEqual(texts, ['text of a', 'text of b', undefined, 'text of d', 'text of e']);
  assert.deepEqual(calls, [['a', 'b', 'missing-c'], ['d', 'e']]);
});

test('the batcher keeps at most maxInFlight batches at once and answers undefined for a batch that failed', async () => {
  let inFlight = 0;
  let most = 0;
  let call = 0;
  const fake = {
    readSmallFiles: async (paths: string[]) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      if (call++ === 0) throw new Error('pool thread failed');
      return paths.map((p) => p);
    },
  };
  const batcher = new ControlFileBatcher(fake, 1, 2);
  const texts = await Promise.all(['a', 'b', 'c', 'd'].map((f) => batcher.read(f)));
  assert.equal(most, 2);
  assert.deepEqual(texts, [undefined, 'b', 'c', 'd']);
});
