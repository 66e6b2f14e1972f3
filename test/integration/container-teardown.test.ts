// Start and remove of real runc containers under conmon, where berth skips the
// runtime binary: start releases runc's exec fifo itself, remove of an exited
// container drops runc's state and cgroups itself. Each must leave exactly
// what `runc start` / `runc delete` would, and fall back to runc when it can't.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { isBerthError } from '../../runtime/errors';
import { conmonFiles, isConmonOf, readExit } from '../../runtime/oci/conmon';
import { processAlive as alive, tryReadPidFile } from '../../runtime/oci/host-process';
import { OciRuntime } from '../../runtime/oci/oci-runtime';
import { containerConfig, ContainerFixture } from './container-fixture';

const fx = new ContainerFixture();
before(() => fx.ready);
after(() => fx.cleanup());

const runcRoot = (): string => fx.config.oci.runtimes.runc.root;

function runcCgroupPaths(id: string): string[] {
  const state = JSON.parse(readFileSync(join(runcRoot(), id, 'state.json'), 'utf8')) as { cgroup_paths: Record<string, string> };
  return [...new Set(Object.values(state.cgroup_paths))];
}


async function until(what: string, check: () => boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('start without runc start', () => {
  test('a started container runs its process and runc reports it running', async () => {
    const id = await fx.run(containerConfig({ name: 'runs', command: ['sleep', '600'] }));
    try {
      assert.equal(fx.containers.get(id)?.state, 'CONTAINER_RUNNING');
      assert.equal(existsSync(join(runcRoot(), id, 'exec.fifo')), false, 'the exec fifo is removed, as runc start does');
      const state = await fx.containers.runtime('runc').state(id);
      assert.equal(state?.status, 'running');
      const pid = fx.containers.get(id)?.pid ?? 0;
      assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^sleep\x00600/);
    } finally {
      await fx.containers.remove(id);
    }
  });

  test('a container whose init died before start fails to start instead of waiting forever', async () => {
    const id = await fx.create(containerConfig({ name: 'diesearly', command: ['sleep', '600'] }));
    const view = fx.containers.get(id);
    assert.ok(view);
    const bundle = view.bundleDir;
    try {
      process.kill(view.pid, 'SIGKILL');
      const exitRecorded = until('conmon recording the exit', () => readExit(bundle) !== undefined);
      // Straight to the runtime: the model would already see the exit and refuse before trying.
      await assert.rejects(fx.containers.runtime('runc').start(id, exitRecorded), /already dead/);
      await exitRecorded;
    } finally {
      await fx.containers.remove(id);
    }
    assert.equal(existsSync(join(runcRoot(), id)), false);
  });

  test('start of a container that exited while created is FAILED_PRECONDITION and leaves it exited', async () => {
    const id = await fx.create(containerConfig({ name: 'goneearly', command: ['sleep', '600'] }));
    const view = fx.containers.get(id);
    assert.ok(view);
    try {
      process.kill(view.pid, 'SIGKILL');
      await until('conmon recording the exit', () => readExit(view.bundleDir) !== undefined);
      await assert.rejects(fx.containers.start(id), (err: Error) => /not created/.test(err.message));
      assert.equal(fx.containers.get(id)?.state, 'CONTAINER_EXITED');
    } finally {
      await fx.containers.remove(id);
    }
  });
});

describe('create refused after conmon was started', () => {
  test('leaves no conmon, no log file and no bundle', async () => {
    const containersDir = join(fx.config.root, 'containers');
    // Names, not a count: a bundle an earlier removal renamed away may still be going in the background.
    const before = new Set(existsSync(containersDir) ? readdirSync(containersDir) : []);
    await assert.rejects(
      fx.create(containerConfig({ name: 'ghostuser', command: ['true'], linux: { resources: null, security_context: { run_as_username: 'ghost' } as never } })),
      (err) => isBerthError(err, 'InvalidArgument'),
    );
    assert.equal(existsSync(join(fx.logDir, 'ghostuser.log')), false, 'log file');
    // The undo may rename the bundle away and delete it in the background, as RemoveContainer does.
    await until('no bundle of the refused container left', () => readdirSync(containersDir).every((entry) => before.has(entry)));
    await until('no conmon of this fixture waiting on its start pipe', () => conmonsUnder(fx.dir).length === 0);
  });
});

function conmonsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('conmon') && argv.some((a) => a.startsWith(dir)) && alive(Number(p))) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

describe('stop without a monitor', () => {
  test('a running container whose conmon died is killed by stop and reported exited with an unknown code', async () => {
    const id = await fx.run(containerConfig({ name: 'orphaned', command: ['sleep', '600'] }));
    const view = fx.containers.get(id);
    assert.ok(view);
    const conmonPid = tryReadPidFile(conmonFiles.conmonPid(view.bundleDir)) ?? 0;
    assert.ok(conmonPid > 0 && isConmonOf(conmonPid, id));
    process.kill(conmonPid, 'SIGKILL');
    await until('conmon dying', () => !isConmonOf(conmonPid, id));
    await fx.containers.stop(id, 1);
    await until('the container process dying', () => !alive(view.pid));
    const detail = fx.containers.detail(id);
    assert.equal(detail.state, 'CONTAINER_EXITED');
    assert.equal(detail.exitCode, 255);
    assert.match(detail.message, /conmon/);
    await fx.containers.remove(id);
    assert.equal(existsSync(join(runcRoot(), id)), false);
  });
});

describe('remove of an exited container', () => {
  test('leaves no runc state, cgroup, monitor, bundle, attach link or exit file', async () => {
    const id = await fx.run(containerConfig({ name: 'quick', command: ['sh', '-c', 'exit 3'] }));
    await fx.waitExited(id);
    const bundle = fx.containers.get(id)?.bundleDir ?? '';
    const conmonPid = tryReadPidFile(conmonFiles.conmonPid(bundle)) ?? 0;
    const cgroups = runcCgroupPaths(id);
    assert.ok(cgroups.length > 0);
    for (const path of cgroups) assert.equal(existsSync(path), true, `${path} exists before remove`);

    await fx.containers.remove(id);

    assert.equal(existsSync(join(runcRoot(), id)), false, 'runc state dir');
    for (const path of cgroups) assert.equal(existsSync(path), false, `${path} is removed`);
    assert.equal(conmonPid > 0 && isConmonOf(conmonPid, id), false, 'conmon is gone');
    assert.equal(existsSync(bundle), false, 'bundle');
    assert.equal(existsSync(join(fx.config.state, 'attach', id)), false, 'attach link');
    assert.equal(existsSync(join(fx.config.state, 'exits', id)), false, 'exit file');
    assert.equal((await fx.containers.runtime('runc').state(id)), undefined, 'runc no longer knows it');
    await fx.containers.remove(id);
  });

  test('a process left in its cgroup (host PID namespace) is killed and the cgroups still go', async () => {
    const id = await fx.run(
      containerConfig({
        name: 'leavesachild',
        command: ['sh', '-c', 'sleep 600 & echo $!; exit 0'],
        linux: { resources: null, security_context: { namespace_options: { network: 'NODE', pid: 'NODE', ipc: 'NODE', target_id: '', userns_options: null } } as never },
      }),
    );
    await fx.waitExited(id);
    const logPath = fx.containers.detail(id).logPath;
    const child = Number(readFileSync(logPath, 'utf8').trim().split(' ').pop());
    assert.ok(Number.isInteger(child) && child > 1, `background pid in the log: ${readFileSync(logPath, 'utf8')}`);
    assert.equal(alive(child), true, 'the background sleep outlived the container init');
    const cgroups = runcCgroupPaths(id);

    await fx.containers.remove(id);

    await until('the left-over process dying', () => !alive(child));
    for (const path of cgroups) assert.equal(existsSync(path), false, `${path} is removed`);
    assert.equal(existsSync(join(runcRoot(), id)), false, 'runc state dir');
  });
});

describe('runtime call observer', () => {
  test('each runc call reports its operation, handler, latency and outcome', async () => {
    const seen: { operation: string; seconds: number; runtime: string; outcome: string }[] = [];
    const runtime = new OciRuntime({
      handler: 'runc',
      path: 'runc',
      root: join(fx.dir, 'observed-runc'),
      systemdCgroup: false,
      observe: (operation, seconds, runtimeName, outcome) => seen.push({ operation, seconds, runtime: runtimeName, outcome }),
    });
    assert.equal(await runtime.state('absent'), undefined);
    await assert.rejects(runtime.update('absent', {}));
    await runtime.deleteExited('absent');
    assert.deepEqual(
      seen.map(({ operation, runtime: r, outcome }) => ({ operation, runtime: r, outcome })),
      [
        { operation: 'state', runtime: 'runc', outcome: 'ok' },
        { operation: 'update', runtime: 'runc', outcome: 'error' },
        { operation: 'delete', runtime: 'runc', outcome: 'ok' },
      ],
    );
    assert.ok(seen.every((s) => s.seconds >= 0 && s.seconds < 60));
  });
});

describe('removal never reaches into a mount', () => {
  test('a mount left in a bundle is detached before the removed bundle is deleted: the host files it showed survive, and nothing of the bundle is left', async () => {
    const native = loadNative();
    const id = await fx.run(containerConfig({ name: 'mounted', command: ['sleep', '600'] }));
    const containersDir = join(fx.config.root, 'containers');
    const bundle = join(containersDir, id);
    const hostDir = mkdtempSync('/tmp/berth-bundle-bind-');
    writeFileSync(join(hostDir, 'keep'), 'a host file');
    const target = join(bundle, 'upper', 'bound');
    mkdirSync(target);
    native.mount(hostDir, target, null, native.mountFlags.MS_BIND);
    try {
      await fx.containers.remove(id);
      assert.equal(fx.containers.get(id), undefined);
      assert.equal(existsSync(bundle), false, 'the bundle is renamed away at once');
      await until('the renamed bundle removed', () => !readdirSync(containersDir).some((name) => name.includes(id)));
      assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(id), false, 'no mount below the removed bundle');
      assert.equal(readFileSync(join(hostDir, 'keep'), 'utf8'), 'a host file', 'nothing was removed through the mount');
    } finally {
      try {
        native.umount2(target, native.mountFlags.MNT_DETACH);
      } catch {
        // detached by the removal (the path is gone with its bundle)
      }
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  test('a removed bundle a crash left behind, with a mount in it, is detached and removed at the next start', async () => {
    const native = loadNative();
    const containersDir = join(fx.config.root, 'containers');
    const leftover = join(containersDir, `.removed-${'c'.repeat(64)}-0badf00d`);
    const hostDir = mkdtempSync('/tmp/berth-bundle-bind-');
    writeFileSync(join(hostDir, 'keep'), 'a host file');
    const target = join(leftover, 'rootfs');
    mkdirSync(join(leftover, 'upper', 'etc'), { recursive: true });
    writeFileSync(join(leftover, 'upper', 'etc', 'written'), 'by the container');
    mkdirSync(target);
    native.mount(hostDir, target, null, native.mountFlags.MS_BIND);
    try {
      fx.containers.close();
      fx.open();
      await fx.containers.recover();
      await until('the leftover removed', () => !existsSync(leftover));
      assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(leftover), false, 'its mount detached');
      assert.equal(readFileSync(join(hostDir, 'keep'), 'utf8'), 'a host file', 'nothing was removed through the mount');
    } finally {
      try {
        native.umount2(target, native.mountFlags.MNT_DETACH);
      } catch {
        // detached by the collection
      }
      rmSync(hostDir, { recursive: true, force: true });
    }
  });
});

describe('recovery of a conmon no record owns', () => {
  test("the orphaned conmon is killed and its runtime container deleted: process, runc state, rootfs mount, bundle", async () => {
    const id = await fx.run(containerConfig({ name: 'lost-record', command: ['sleep', '600'] }));
    const view = fx.containers.get(id);
    assert.ok(view);
    const conmonPid = tryReadPidFile(conmonFiles.conmonPid(view.bundleDir)) ?? 0;
    assert.ok(conmonPid > 0 && isConmonOf(conmonPid, id));
    // The record goes while the container and its monitor keep running (a lost row), then berthd starts again.
    fx.containers.close();
    fx.db.db.prepare('DELETE FROM containers WHERE id = ?').run(id);
    fx.open();
    await fx.containers.recover();
    await until('conmon dying', () => !isConmonOf(conmonPid, id));
    await until('the container process dying', () => !alive(view.pid));
    assert.equal(existsSync(join(runcRoot(), id)), false, 'runc state dir');
    assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(join(view.bundleDir, 'rootfs')), false, 'rootfs unmounted');
    await until('the stray bundle collected', () => !existsSync(view.bundleDir));
  });
});
