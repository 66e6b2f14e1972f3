// runCommand: a short host command started by the addon's posix_spawn on a
// pool thread (runc, CNI plugins, the pause binary), with execFile's contract:
// stdin from the input, stdout and stderr collected, the exit status, a timeout.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { CommandStartError, runCommand } from '../../native/run-command';

test('the input reaches stdin, stdout and stderr come back apart, and the exit code is the command\'s', async () => {
  const result = await runCommand('/bin/sh', ['-c', 'read line; echo "out $line $X"; echo err >&2; exit 3'], { input: 'hello\n', env: { X: 'env', PATH: '/bin:/usr/bin' } });
  assert.equal(result.code, 3);
  assert.equal(result.signal, null);
  assert.equal(result.stdout.toString(), 'out hello env\n');
  assert.equal(result.stderr.toString(), 'err\n');
  assert.equal(result.timedOut, false);
});

test('an input larger than a pipe holds reaches stdin whole: what the pipe took before the start, the rest after', async () => {
  const input = Buffer.alloc(300_000);
  for (let i = 0; i < input.length; i++) input[i] = (i * 7) % 251;
  const result = await runCommand('/usr/bin/sha256sum', [], { input });
  assert.equal(result.code, 0);
  assert.equal(result.stdout.toString().split(' ')[0], createHash('sha256').update(input).digest('hex'));
});

test('an input the pipe takes whole is there before the command starts: stdin is already at its end', async () => {
  // dd with iflag=nonblock reads stdin once without waiting: it sees everything only if it was written before;
  // this event loop is kept busy meanwhile, so nothing could be written from here.
  const running = runCommand('/bin/sh', ['-c', 'dd bs=65536 count=1 iflag=nonblock 2>/dev/null | wc -c'], { input: 'x'.repeat(5000) });
  const busyUntil = Date.now() + 300;
  while (Date.now() < busyUntil) {
    // the loop cannot turn
  }
  const result = await running;
  assert.equal(result.code, 0);
  assert.equal(result.stdout.toString().trim(), '5000');
});

test('without input stdin is empty and the command is not left waiting on it', async () => {
  const result = await runCommand('/bin/sh', ['-c', 'cat; echo done']);
  assert.equal(result.code, 0);
  assert.equal(result.stdout.toString(), 'done\n');
});

test('a command that outlives its timeout is killed and says so', async () => {
  const result = await runCommand('/bin/sleep', ['30'], { timeoutMs: 100 });
  assert.equal(result.timedOut, true);
  assert.equal(result.code, null);
  assert.equal(result.signal, 'SIGKILL');
});

test('output beyond maxOutputBytes is read and dropped', async () => {
  const result = await runCommand('/bin/sh', ['-c', 'head -c 100000 /dev/zero'], { maxOutputBytes: 1000 });
  assert.equal(result.code, 0);
  assert.equal(result.stdout.length, 1000);
});

test('a binary that does not exist rejects with a CommandStartError naming it and leaves no fd open', async () => {
  const before = readdirSync('/proc/self/fd').length;
  await assert.rejects(runCommand('/nonexistent/runc', ['state', 'x'], { input: '{}' }), (err: unknown) => {
    assert.ok(err instanceof CommandStartError);
    assert.match(err.message, /\/nonexistent\/runc/);
    return true;
  });
  assert.equal(readdirSync('/proc/self/fd').length, before);
});

test('the command is reaped: no zombie stays behind', async () => {
  const result = await runCommand('/bin/sh', ['-c', 'echo $$']);
  const pid = Number(result.stdout.toString().trim());
  assert.ok(pid > 0);
  assert.throws(() => readdirSync(`/proc/${pid}/fd`));
});
