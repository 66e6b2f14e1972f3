// signalCgroupProcesses on a real cgroup this test creates in every hierarchy:
// every process listed in it is signalled, one forked after it was moved in
// included, and a process outside it is not.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import { after, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import { processAlive as alive } from '../../runtime/oci/host-process';

const native = loadNative();


async function until(probe: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('signalCgroupProcesses', { skip: process.getuid?.() !== 0 ? 'needs root (cgroups)' : undefined }, () => {
  const hierarchy = CgroupHierarchy.detect();
  const path = `/berth-test-cgsig-${randomBytes(4).toString('hex')}`;
  const children: ChildProcess[] = [];

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (let attempt = 0; ; attempt++) {
      try {
        hierarchy.remove(path);
        return;
      } catch (err) {
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  test('SIGKILLs every process in the cgroup, one forked inside it too, and none outside it', async () => {
    hierarchy.ensure(path);
    // sh waits for a line, so it forks only once it is in the cgroup; its child then is too.
    const inside = spawn('sh', ['-c', 'read go; trap "" TERM; sleep 1000 & wait'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const outside = spawn('sleep', ['1000'], { stdio: 'ignore' });
    children.push(inside, outside);
    hierarchy.addProcess(path, inside.pid ?? 0);
    inside.stdin?.write('go\n');
    await until(() => hierarchy.processes(path).length === 2, 'the forked child in the cgroup');
    const members = hierarchy.processes(path);
    assert.ok(members.includes(inside.pid ?? 0));

    const result = await native.signalCgroupProcesses(hierarchy.procsFiles(path), constants.signals.SIGKILL, 8);
    assert.deepEqual([...result.signalled].sort(), [...members].sort());
    assert.deepEqual(result.left, []);
    assert.equal(result.error, undefined);
    await until(() => members.every((pid) => !alive(pid)), 'the cgroup\'s processes to die');
    assert.ok(alive(outside.pid ?? 0), 'the process outside the cgroup lives');
  });

  test('an emptied or absent cgroup has nothing to signal', async () => {
    const result = await native.signalCgroupProcesses(hierarchy.procsFiles(`${path}-absent`), constants.signals.SIGKILL, 8);
    assert.deepEqual(result, { signalled: [], left: [], rounds: 1 });
  });

  test('refuses a file that is not a cgroup.procs, and a signal or round count out of range', () => {
    assert.throws(() => native.signalCgroupProcesses(['/etc/passwd'], 9, 1), TypeError);
    assert.throws(() => native.signalCgroupProcesses([], 0, 1), RangeError);
    assert.throws(() => native.signalCgroupProcesses([], 9, 65), RangeError);
  });
});
