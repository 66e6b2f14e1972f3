// Containers run by real runc under real conmon, driven through the container
// model: command/env/user semantics, exit codes and reasons, CRI log format,
// ExecSync, security context, stop escalation, restart recovery.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isBerthError } from '../../runtime/errors';
import { EXEC_RESPONSE_FRAMING_BYTES } from '../../runtime/container/exec-output';
import { containerConfig, ContainerFixture } from './container-fixture';

const fx = new ContainerFixture();
before(() => fx.ready);
after(() => fx.cleanup());

async function output(cmd: string[], over: Parameters<typeof containerConfig>[0] = {}): Promise<{ log: string; exitCode: number; reason: string; id: string }> {
  const name = `c${Math.random().toString(16).slice(2, 10)}`;
  const id = await fx.run(containerConfig({ name, command: cmd, ...over }));
  await fx.waitExited(id);
  const detail = fx.containers.detail(id);
  const log = readFileSync(detail.logPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').slice(3).join(' '))
    .join('\n');
  return { log, exitCode: detail.exitCode, reason: detail.reason, id };
}

describe('command, env, workdir and user', () => {
  test('image Cmd runs when the request names no command', async () => {
    fx.imageConfig = { Entrypoint: ['echo', 'ep'], Cmd: ['from-cmd'], Env: ['PATH=/bin'] };
    const { log } = await output([]);
    assert.equal(log, 'ep from-cmd');
    const withArgs = await output([], { args: ['from-args'] });
    assert.equal(withArgs.log, 'ep from-args');
    fx.imageConfig = { Cmd: ['sh'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'] };
  });

  test('a request command replaces the image entrypoint and cmd', async () => {
    fx.imageConfig = { Entrypoint: ['echo', 'ep'], Cmd: ['from-cmd'], Env: ['PATH=/bin'] };
    assert.equal((await output(['echo', 'only'])).log, 'only');
    fx.imageConfig = { Cmd: ['sh'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'] };
  });

  test('env merges image then request; working dir and HOSTNAME are set', async () => {
    const { log } = await output(['sh', '-c', 'echo $FROM_IMAGE $MINE $HOSTNAME; pwd'], {
      envs: [{ key: 'MINE', value: Buffer.from('v1') }],
      working_dir: '/work',
    });
    assert.equal(log, 'yes v1 podhost\n/work');
  });

  test('run_as_username resolves uid, gid and groups from the image', async () => {
    const { log } = await output(['id'], {
      linux: { resources: null, security_context: { run_as_username: 'app', supplemental_groups: ['3000'] } as never },
    });
    // busybox-static prints numbers only (no NSS); 1000 is the primary group, so not repeated.
    assert.match(log, /^uid=1000(\(app\))? gid=1000(\(app\))? groups=1000(\(app\))?,2000(\(extra\))?,3000$/);
  });

  test('run_as_user and run_as_group override the image', async () => {
    const { log } = await output(['id', '-u'], { linux: { resources: null, security_context: { run_as_user: { value: '4242' }, run_as_group: { value: '77' } } as never } });
    assert.equal(log, '4242');
  });

  test('a non-root user can read the image after exec (the overlay root is not 0700)', async () => {
    // Capabilities are gone after execve for a non-root uid, so this reads through "/" as uid 1000 alone.
    const r = await output(['cat', '/etc/group'], { linux: { resources: null, security_context: { run_as_user: { value: '1000' } } as never } });
    assert.equal(r.exitCode, 0, r.log);
    assert.match(r.log, /^app:x:1000:/m);
  });

  test('an unknown user name is a clear error and leaves nothing behind', async () => {
    await assert.rejects(
      fx.create(containerConfig({ name: 'nouser', command: ['true'], linux: { resources: null, security_context: { run_as_username: 'ghost' } as never } })),
      (err) => isBerthError(err, 'InvalidArgument') && /ghost/.test(err.message),
    );
    assert.equal(fx.containers.list().filter((c) => c.config.metadata?.name === 'nouser').length, 0);
  });
});

describe('exit codes, reasons and logs', () => {
  test('exit 0 is Completed, non-zero is Error with the code', async () => {
    const ok = await output(['true']);
    assert.deepEqual([ok.exitCode, ok.reason], [0, 'Completed']);
    const bad = await output(['sh', '-c', 'exit 7']);
    assert.deepEqual([bad.exitCode, bad.reason], [7, 'Error']);
  });

  test('logs are in the CRI format with partial lines marked P', async () => {
    const { id } = await output(['sh', '-c', 'echo out; echo err >&2; printf tail']);
    const lines = readFileSync(fx.containers.detail(id).logPath, 'utf8').split('\n').filter(Boolean);
    const parsed = lines.map((l) => l.split(' '));
    for (const p of parsed) assert.match(p[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)$/);
    assert.ok(parsed.some((p) => p[1] === 'stdout' && p[2] === 'F' && p[3] === 'out'));
    assert.ok(parsed.some((p) => p[1] === 'stderr' && p[2] === 'F' && p[3] === 'err'));
    assert.ok(parsed.some((p) => p[1] === 'stdout' && p[2] === 'P' && p[3] === 'tail'));
  });

  test('ReopenContainerLog after a rotation returns once the new log file exists, and lines go there', async () => {
    const name = `rotating${Math.random().toString(16).slice(2, 8)}`;
    const id = await fx.run(containerConfig({ name, command: ['sh', '-c', 'i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done'] }));
    try {
      const logPath = fx.containers.detail(id).logPath;
      for (let i = 0; i < 200 && !(existsSync(logPath) && readFileSync(logPath, 'utf8').includes('tick')); i++) await new Promise((r) => setTimeout(r, 25));
      renameSync(logPath, `${logPath}.1`);
      await fx.containers.reopenLog(id);
      assert.ok(existsSync(logPath), 'the new log file exists when the call returns');
      for (let i = 0; i < 200 && !readFileSync(logPath, 'utf8').includes('tick'); i++) await new Promise((r) => setTimeout(r, 25));
      assert.match(readFileSync(logPath, 'utf8'), / stdout F tick\d+\n/);
    } finally {
      await fx.containers.remove(id);
    }
  });

  test('a memory limit breach is reported as OOMKilled', async () => {
    const r = await output(['sh', '-c', 'x=a; while true; do x="$x$x"; done'], {
      linux: { resources: { memory_limit_in_bytes: String(16 * 1024 * 1024) } as never, security_context: null },
    });
    assert.equal(r.reason, 'OOMKilled');
    assert.equal(r.exitCode, 137);
  });

  test('lifecycle events are published', async () => {
    const { id } = await output(['true']);
    const types = fx.events.filter((e) => e.containerId === id).map((e) => e.type);
    assert.deepEqual(types.slice(0, 3), ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT']);
  });
});

describe('security context', () => {
  test('readonly rootfs refuses writes', async () => {
    const r = await output(['sh', '-c', 'touch /x && echo wrote || echo refused'], { linux: { resources: null, security_context: { readonly_rootfs: true } as never } });
    assert.match(r.log, /refused/);
  });

  test('capabilities add and drop show in /proc/self/status', async () => {
    const r = await output(['grep', 'CapBnd', '/proc/self/status'], {
      linux: { resources: null, security_context: { capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: ['ALL'], add_ambient_capabilities: [] } } as never },
    });
    // CAP_NET_ADMIN is bit 12 only.
    assert.match(r.log, /CapBnd:\s+0000000000001000/);
  });

  test('the RuntimeDefault seccomp profile refuses unshare and mount', async () => {
    const r = await output(['sh', '-c', 'unshare -U true 2>&1; echo rc=$?'], {
      linux: { resources: null, security_context: { seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } } as never },
    });
    assert.match(r.log, /Operation not permitted/);
    assert.match(r.log, /rc=1/);
    const unconfined = await output(['sh', '-c', 'unshare -U true; echo rc=$?'], { linux: { resources: null, security_context: { seccomp: { profile_type: 'Unconfined', localhost_ref: '' } } as never } });
    assert.match(unconfined.log, /rc=0/);
  });
});

describe('exec, stop and remove', () => {
  let id = '';
  before(async () => {
    id = await fx.run(containerConfig({ name: 'sleeper', command: ['sh', '-c', 'trap "" TERM; while true; do sleep 1; done'], working_dir: '/tmp' }));
  });

  test('ExecSync returns output and exit code with the container env and cwd', async () => {
    const r = await fx.containers.execSync(id, ['sh', '-c', 'pwd; echo $FROM_IMAGE; echo e >&2; exit 3'], 10);
    assert.equal(r.stdout.toString(), '/tmp\nyes\n');
    assert.equal(r.stderr.toString(), 'e\n');
    assert.equal(r.exitCode, 3);
  });

  test('ExecSync caps output per stream', async () => {
    const r = await fx.containers.execSync(id, ['sh', '-c', 'head -c 20000000 /dev/zero'], 30);
    // Each stream at most its cap, and the answer within the gRPC send limit (exec-output.ts).
    assert.equal(r.stdout.length, Math.min(fx.config.container.exec_sync_max_output_bytes, fx.config.grpc.max_send_message_bytes - EXEC_RESPONSE_FRAMING_BYTES));
  });

  test('ExecSync past its timeout is killed and reported as deadline exceeded', async () => {
    await assert.rejects(fx.containers.execSync(id, ['sleep', '60'], 1), (err) => isBerthError(err, 'DeadlineExceeded'));
    const ps = await fx.containers.execSync(id, ['ps'], 10);
    assert.doesNotMatch(ps.stdout.toString(), /sleep 60/);
  });

  test('a timed-out ExecSync process is gone, not a zombie, under an init that never reaps', async () => {
    // sleep as pid 1 reaps nothing: a process orphaned to it would stay as a zombie ps still lists.
    const quiet = await fx.run(containerConfig({ name: 'nonreaper', command: ['sleep', '600'] }));
    try {
      await assert.rejects(fx.containers.execSync(quiet, ['tail', '-f', '/dev/null'], 1), (err) => isBerthError(err, 'DeadlineExceeded'));
      const ps = await fx.containers.execSync(quiet, ['ps', '-o', 'pid,stat,args'], 10);
      assert.doesNotMatch(ps.stdout.toString(), /tail/);
    } finally {
      await fx.containers.remove(quiet);
    }
  });

  test('stop escalates to SIGKILL when SIGTERM is ignored', async () => {
    await fx.containers.stop(id, 1);
    const d = fx.containers.detail(id);
    assert.equal(d.state, 'CONTAINER_EXITED');
    assert.equal(d.exitCode, 137);
  });

  test('remove is idempotent and leaves no bundle', async () => {
    const dir = fx.containers.detail(id).bundleDir;
    await fx.containers.remove(id);
    await fx.containers.remove(id);
    assert.equal(existsSync(dir), false);
    assert.equal(fx.containers.get(id), undefined);
  });
});

describe('crun as a second handler', () => {
  test('runs a container, or refuses clearly on a hybrid host with cgroup2 controllers', async () => {
    const crun = new ContainerFixture('crun');
    try {
      const cg = (await import('../../runtime/host/host-facts')).detectCgroups();
      const create = crun.run(containerConfig({ name: 'crun1', command: ['sh', '-c', 'exit 9'] }));
      if (cg.mode === 'hybrid' && cg.v2Controllers.length > 0) {
        await assert.rejects(create, (err) => isBerthError(err, 'FailedPrecondition') && /crun/.test(err.message) && /hybrid/.test(err.message));
        assert.equal(crun.containers.list().length, 0);
      } else {
        const id = await create;
        await crun.waitExited(id);
        assert.equal(crun.containers.detail(id).exitCode, 9);
      }
    } finally {
      await crun.cleanup();
    }
  });
});
