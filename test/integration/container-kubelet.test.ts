// What a kubelet relies on beyond critest, through a real berthd: a
// StopContainer whose caller gives up stops escalating, duplicate container
// names, supplemental groups as the process really has them, ExecSync that
// answers within its timeout when a leftover holds its output, and a
// ContainerStatus log_path that is what the caller asked for.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const DEADLINE_EXCEEDED = 4;
const ALREADY_EXISTS = 6;
/** What the slow runtime handler waits before each `create`, and a client deadline sure to pass first. */
const SLOW_CREATE_S = 1.5;
const SHORT_DEADLINE_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('containers as the kubelet drives them', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  /** busybox with daemon (uid 1) and default-user (uid 1000, listed in group 50000 by /etc/group). */
  let groupsImage = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  const logDir = mkdtempSync('/tmp/berth-kubelet-logs-');

  const containerConfig = (name: string, command: string[], extra: Record<string, unknown> = {}) => ({
    metadata: { name, attempt: 0 },
    image: { image },
    command,
    log_path: `${name}.log`,
    linux: {},
    ...extra,
  });

  async function create(name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> {
    const { container_id } = await berthd.client.call('CreateContainer', { pod_sandbox_id: podId, config: containerConfig(name, command, extra), sandbox_config: sandboxConfig });
    return container_id;
  }

  async function run(name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> {
    const id = await create(name, command, extra);
    await berthd.client.call('StartContainer', { container_id: id });
    return id;
  }

  /** The container's first log line (CRI log format: time stream tag content), once written. */
  async function firstLogLine(name: string): Promise<string> {
    for (let i = 0; i < 200; i++) {
      let text = '';
      try {
        text = readFileSync(join(logDir, `${name}.log`), 'utf8');
      } catch {
        // not yet created
      }
      const line = text.split('\n').find((l) => l.includes(' stdout F '));
      if (line) return line.slice(line.indexOf(' stdout F ') + ' stdout F '.length);
      await sleep(25);
    }
    throw new Error(`${name} logged nothing`);
  }

  const exec = async (id: string, cmd: string[]) => (await berthd.client.call('ExecSync', { container_id: id, cmd, timeout: '10' })).stdout.toString();

  const userOf = async (id: string) => {
    const linux = (await berthd.client.call('ContainerStatus', { container_id: id })).status!.user?.linux;
    return linux && { uid: linux.uid, gid: linux.gid, supplemental_groups: [...linux.supplemental_groups].map(Number).sort((a, b) => a - b) };
  };

  const state = async (id: string) => (await berthd.client.call('ContainerStatus', { container_id: id })).status!.state;

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/kubelet:v1')).reference;
    // A runtime handler whose `create` takes a while: "the caller timed out first" is then certain.
    const wrapper = join(logDir, 'slowrunc');
    writeFileSync(wrapper, `#!/bin/sh\nfor a in "$@"; do [ "$a" = create ] && sleep ${SLOW_CREATE_S} && break; done\nexec runc "$@"\n`);
    chmodSync(wrapper, 0o755);
    berthd = await startBerthd({ extraToml: `[oci.runtimes.slowrunc]\npath = ${JSON.stringify(wrapper)}\nroot = ${JSON.stringify(join(logDir, 'slowrunc-root'))}\n` });
    await berthd.client.call('PullImage', { image: { image } });
    groupsImage = (
      await pushBusyboxImage(registry, 'test/groups:v1', {
        users: [{ name: 'daemon', uid: 1, gid: 1 }, { name: 'default-user', uid: 1000, gid: 1000 }],
        groups: [{ name: 'group-defined-in-image', gid: 50000, members: ['default-user'] }],
      })
    ).reference;
    await berthd.client.call('PullImage', { image: { image: groupsImage } });
    sandboxConfig = podConfig('kubelet', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    });
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig })).pod_sandbox_id;
  });

  after(async () => {
    if (berthd) {
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
      await berthd.cleanup();
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('a StopContainer whose caller gives up during the grace period sends no SIGKILL; the next StopContainer decides', async () => {
    // PID 1 of its own PID namespace without a handler: SIGTERM does nothing to it.
    const id = await run('stubborn', ['sleep', '600']);
    await assert.rejects(
      berthd.client.call('StopContainer', { container_id: id, timeout: '3' }, { timeoutMs: 1000 }),
      (e: unknown) => grpcCode(e) === DEADLINE_EXCEEDED,
    );
    // Past the 3 s the cancelled call asked for: no SIGKILL came.
    await sleep(4000);
    assert.equal(await state(id), 'CONTAINER_RUNNING');
    await berthd.client.call('StopContainer', { container_id: id, timeout: '0' });
    assert.equal(await state(id), 'CONTAINER_EXITED');
    await berthd.client.call('RemoveContainer', { container_id: id });
  });

  test('Status reports the SupplementalGroupsPolicy feature', async () => {
    const status = await berthd.client.call('Status', { verbose: false });
    assert.equal(status.features?.supplemental_groups_policy, true);
  });

  test('Merge (the default): busybox as daemon with supplemental group 1234 runs with its primary group too, init and exec alike', async () => {
    const name = 'daemon-merge';
    const id = await run(name, ['sh', '-c', 'id; sleep 600'], { image: { image: groupsImage }, linux: { security_context: { run_as_username: 'daemon', supplemental_groups: ['1234'] } } });
    assert.equal(await firstLogLine(name), 'uid=1(daemon) gid=1(daemon) groups=1(daemon),1234');
    assert.equal(await exec(id, ['id']), 'uid=1(daemon) gid=1(daemon) groups=1(daemon),1234\n');
    assert.deepEqual(await userOf(id), { uid: '1', gid: '1', supplemental_groups: [1, 1234] });
    await berthd.client.call('RemoveContainer', { container_id: id });
  });

  test('Merge adds the groups the image\'s /etc/group lists the user in; Strict keeps only the primary group and the request\'s', async () => {
    const cases = [
      { policy: 'Merge', groups: [1000, 1234, 50000] },
      { policy: 'Strict', groups: [1000, 1234] },
    ];
    for (const { policy, groups } of cases) {
      const name = `groups-${policy.toLowerCase()}`;
      const id = await run(name, ['sh', '-c', 'id -G; sleep 600'], {
        image: { image: groupsImage },
        linux: { security_context: { run_as_user: { value: '1000' }, supplemental_groups: ['1234'], supplemental_groups_policy: policy } },
      });
      assert.equal(await firstLogLine(name), groups.join(' '), `${policy}: the first process`);
      assert.equal(await exec(id, ['id', '-G']), `${groups.join(' ')}\n`, `${policy}: an exec'd process`);
      assert.deepEqual(await userOf(id), { uid: '1000', gid: '1000', supplemental_groups: groups }, `${policy}: ContainerStatus.user`);
      await berthd.client.call('RemoveContainer', { container_id: id });
    }
  });

  describe('ExecSync whose command leaves a background child holding its output', () => {
    let id = '';
    const processes = async (): Promise<string> => exec(id, ['ps', '-o', 'args']);
    before(async () => {
      id = await run('drain', ['sleep', '600']);
    });

    test('answers with the exit code and the output so far well within its timeout, and kills the child', async () => {
      // The kubelet waits the probe's timeout and a little more: an answer at twice the timeout is no answer.
      const r = await berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'echo before; sleep 365d &'], timeout: '5' }, { timeoutMs: 8000 });
      assert.equal(r.exit_code, 0);
      assert.equal(r.stdout.toString(), 'before\n');
      assert.doesNotMatch(await processes(), /sleep 365d/, 'the child holding the output is gone');
    });

    test('a timed-out command is DEADLINE_EXCEEDED within its timeout, and what it started is gone too', async () => {
      await assert.rejects(
        berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'sleep 366d & sleep 601'], timeout: '2' }, { timeoutMs: 5000 }),
        (e: unknown) => grpcCode(e) === DEADLINE_EXCEEDED && /timed out after 2 s/.test(String(e)),
      );
      assert.doesNotMatch(await processes(), /sleep (366d|601)$/m);
    });

    test('a child that let go of the exec\'s output is no leftover: it keeps running', async () => {
      const r = await berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'sleep 367d >/dev/null 2>&1 &'], timeout: '5' }, { timeoutMs: 8000 });
      assert.equal(r.exit_code, 0);
      assert.match(await processes(), /sleep 367d/);
    });
  });

  test('a container created with no log_path reports none: berth\'s own log file stays out of the API', async () => {
    const id = await run('nolog', ['sh', '-c', 'echo hidden; sleep 600'], { log_path: '' });
    const { status, info } = await berthd.client.call('ContainerStatus', { container_id: id });
    assert.equal(status!.log_path, '');
    assert.ok(!JSON.stringify(status).includes(berthd.root), 'no path of berth\'s in the status');
    assert.deepEqual(info, {});
    const listed = (await berthd.client.call('ListContainers', { filter: { id, label_selector: {} } })).containers;
    assert.equal(listed.length, 1);
    assert.ok(!JSON.stringify(listed).includes(berthd.root), 'no path of berth\'s in the list');
    const named = await run('withlog', ['sleep', '600']);
    assert.equal((await berthd.client.call('ContainerStatus', { container_id: named })).status!.log_path, join(logDir, 'withlog.log'));
    for (const c of [id, named]) await berthd.client.call('RemoveContainer', { container_id: c });
  });

  describe('duplicate container names in a pod', () => {
    let slowPod = '';
    let slowConfig: ReturnType<typeof podConfig>;
    before(async () => {
      slowConfig = podConfig('slowpod', {
        log_directory: logDir,
        linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
      });
      slowPod = (await berthd.client.call('RunPodSandbox', { config: slowConfig, runtime_handler: 'slowrunc' })).pod_sandbox_id;
    });
    after(async () => {
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: slowPod }).catch(() => undefined);
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: slowPod }).catch(() => undefined);
    });

    const createIn = (name: string, timeoutMs?: number) =>
      berthd.client.call('CreateContainer', { pod_sandbox_id: slowPod, config: containerConfig(name, ['sleep', '600']), sandbox_config: slowConfig }, { timeoutMs });
    const inPod = async () => (await berthd.client.call('ListContainers', { filter: { pod_sandbox_id: slowPod, label_selector: {} } })).containers.map((c) => c.id);
    const isCode = (code: number, ...words: string[]) => (e: unknown): boolean => {
      assert.equal(grpcCode(e), code, String(e));
      for (const w of words) assert.ok(String(e).includes(w), `"${String(e)}" names ${w}`);
      return true;
    };

    test('a second CreateContainer of a delivered name and attempt is ALREADY_EXISTS naming the container that holds it', async () => {
      const { container_id: id } = await createIn('twice');
      await assert.rejects(createIn('twice'), isCode(ALREADY_EXISTS, '"twice"', id));
      assert.deepEqual(await inPod(), [id]);
      await berthd.client.call('RemoveContainer', { container_id: id });
    });

    test('a retry after CreateContainer timed out on the client gets the container the first call made, once', async () => {
      await assert.rejects(createIn('timedout', SHORT_DEADLINE_MS), isCode(DEADLINE_EXCEEDED));
      let made: string[] = [];
      for (let i = 0; i < 200 && made.length === 0; i++) {
        made = await inPod();
        if (made.length === 0) await sleep(50);
      }
      assert.equal(made.length, 1, 'the first call made its container');
      const retry = await createIn('timedout');
      assert.equal(retry.container_id, made[0], 'the retry gets the undelivered container');
      await assert.rejects(createIn('timedout'), isCode(ALREADY_EXISTS, made[0]));
      await berthd.client.call('RemoveContainer', { container_id: made[0] });
    });

    test('a retry while the timed-out first CreateContainer still runs joins it', async () => {
      await assert.rejects(createIn('inflight', SHORT_DEADLINE_MS), isCode(DEADLINE_EXCEEDED));
      const retry = await createIn('inflight');
      assert.deepEqual(await inPod(), [retry.container_id], 'one container, the one the retry got');
      await assert.rejects(createIn('inflight'), isCode(ALREADY_EXISTS, retry.container_id));
      await berthd.client.call('RemoveContainer', { container_id: retry.container_id });
    });
  });
});
