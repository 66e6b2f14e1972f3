// The addon's posix_spawn that starts conmon without forking berthd's heap:
// pipes land on the child fds asked for, the child leads a session of its
// own with default signal handling (Node ignores SIGPIPE), and waitChild reaps it.
import assert from 'node:assert/strict';
import { closeSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { ADDON_PATH, loadNative } from '../../native';

const native = loadNative();

function readAll(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket({ fd, readable: true, writable: false });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
  });
}

function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const [k, v] = line.split(':\t');
    if (k && v !== undefined) out[k] = v.trim();
  }
  return out;
}

test('pipes reach the child on the fds asked for, in a new session with default signals, and the child is reaped', async () => {
  const script = 'echo "out $X"; echo err >&2; echo "sync $(pwd)" >&3; read line <&4; echo "got $line" >&3; exit 7';
  const { pid, fds } = await native.spawnDetached('/bin/sh', ['sh', '-c', script], ['X=from-env', 'PATH=/usr/bin:/bin'], '/tmp', ['null', 'write', 'write', 'write', 'read']);
  assert.ok(pid > 0);
  assert.equal(fds[0], -1);
  const [out, err, sync] = [readAll(fds[1]), readAll(fds[2]), readAll(fds[3])];
  try {
    // Blocked on fd 4 until written: its session and signal state can be read now.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    assert.equal(Number(fields[3]), pid, 'session id is its own pid (setsid)');
    const status = procStatus(pid);
    assert.equal(BigInt(`0x${status.SigBlk}`), 0n, 'no blocked signals');
    assert.equal(BigInt(`0x${status.SigIgn}`) & (1n << 12n), 0n, 'SIGPIPE is not ignored');
    writeSync(fds[4], 'go\n');
  } finally {
    closeSync(fds[4]);
  }
  assert.deepEqual(await native.waitChild(pid), { code: 7, signal: null });
  assert.equal(await out, 'out from-env\n');
  assert.equal(await err, 'err\n');
  assert.equal(await sync, 'sync /tmp\ngot go\n');
  assert.throws(() => readFileSync(`/proc/${pid}/stat`), 'no zombie left');
});

test('a binary that does not exist is an error naming it, with no pipes left open', async () => {
  const before = countFds();
  await assert.rejects(native.spawnDetached('/nonexistent/conmon', ['conmon'], [], '/', ['null', 'write']), /posix_spawn \/nonexistent\/conmon/);
  assert.equal(countFds(), before);
});

test('only the fds asked for reach the child: an fd berthd inherited without close-on-exec does not', async () => {
  // A node process given an extra pipe as its fd 3 (inherited: no close-on-exec), as a service manager's socket would be.
  const script = `
    const native = require(${JSON.stringify(ADDON_PATH)});
    const fs = require('fs');
    const own = fs.readdirSync('/proc/self/fd');
    native.spawnDetached('/bin/sleep', ['sleep', '30'], [], '/', ['null', 'null', 'null']).then(({ pid }) => {
      const child = fs.readdirSync('/proc/' + pid + '/fd');
      process.kill(pid, 'SIGKILL');
      return native.waitChild(pid).then(() => { process.stdout.write(JSON.stringify({ own, child })); });
    });
  `;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
    let text = '';
    child.stdout!.on('data', (b: Buffer) => (text += b.toString()));
    child.once('error', reject);
    child.once('exit', () => resolve(text));
  });
  const { own, child } = JSON.parse(out) as { own: string[]; child: string[] };
  assert.ok(own.includes('3'), 'the spawning process holds the inherited fd 3');
  assert.deepEqual(child.sort(), ['0', '1', '2'], 'the child holds only its stdio');
});

function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}
