// Containers through a real berthd over CRI: pull from a local registry, run a
// host-network pod, create/start/exec/status/list/stop/remove, request
// validation, and restart recovery after berthd is SIGKILLed.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;

describe('containers over CRI', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  const logDir = mkdtempSync('/tmp/berth-ctr-logs-');

  const config = (name: string, command: string[], extra: Record<string, unknown> = {}) => ({
    metadata: { name, attempt: 0 },
    image: { image },
    command,
    log_path: `${name}.log`,
    linux: { resources: {}, security_context: {} },
    labels: { app: 'berth-test', name },
    ...extra,
  });

  const create = async (name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> => {
    const { container_id } = await berthd.client.call('CreateContainer', { pod_sandbox_id: podId, config: config(name, command, extra), sandbox_config: sandboxConfig } as never);
    return container_id;
  };

  const status = async (id: string) => (await berthd.client.call('ContainerStatus', { container_id: id, verbose: true })).status!;

  const waitState = async (id: string, state: string): Promise<void> => {
    for (let i = 0; i < 600; i++) {
      if ((await status(id)).state === state) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`container ${id} never reached ${state}`);
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/ctr:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } } as never);
    sandboxConfig = podConfig('ctrpod', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
  });

  after(async () => {
    if (berthd) {
      try {
        const { containers } = await berthd.client.call('ListContainers', {});
        for (const c of containers) await berthd.client.call('RemoveContainer', { container_id: c.id });
        await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
        await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
      } catch {
        // best effort; cleanup() below still stops berthd
      }
      const root = berthd.root;
      await berthd.cleanup();
      assert.deepEqual(conmonsUnder(root), [], 'no conmon may outlive its containers');
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('create, start, exec, status, list by filters, stop and remove', async () => {
    const id = await create('web', ['sh', '-c', 'echo started; exec sleep 600']);
    assert.equal((await status(id)).state, 'CONTAINER_CREATED');
    await berthd.client.call('StartContainer', { container_id: id.slice(0, 12) });
    await waitState(id, 'CONTAINER_RUNNING');
    const exec = await berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'echo hi; exit 4'], timeout: '10' } as never);
    assert.equal(Buffer.from(exec.stdout).toString(), 'hi\n');
    assert.equal(exec.exit_code, 4);
    const st = await berthd.client.call('ContainerStatus', { container_id: id, verbose: true });
    assert.equal(st.status!.log_path, join(logDir, 'web.log'));
    assert.ok(JSON.parse(st.info.info).pid > 0);
    const byLabel = await berthd.client.call('ListContainers', { filter: { label_selector: { name: 'web' } } } as never);
    assert.deepEqual(byLabel.containers.map((c) => c.id), [id]);
    const byState = await berthd.client.call('ListContainers', { filter: { state: { state: 'CONTAINER_EXITED' } } } as never);
    assert.ok(!byState.containers.some((c) => c.id === id));
    const streamed = await berthd.client.collect('StreamContainers', { filter: { pod_sandbox_id: podId } } as never);
    assert.ok(streamed.flatMap((m) => m.containers).some((c) => c.id === id));
    await berthd.client.call('StopContainer', { container_id: id, timeout: '5' } as never);
    assert.equal((await status(id)).state, 'CONTAINER_EXITED');
    assert.match(readFileSync(join(logDir, 'web.log'), 'utf8'), / stdout F started\n/);
    await berthd.client.call('RemoveContainer', { container_id: id });
    await berthd.client.call('RemoveContainer', { container_id: id });
    await assert.rejects(berthd.client.call('ContainerStatus', { container_id: id }), (e) => grpcCode(e) === NOT_FOUND);
  });

  test('/metrics times each OCI runtime call of a container lifecycle, by operation, handler and outcome', async () => {
    const id = await create('timed', ['sleep', '600']);
    await berthd.client.call('StartContainer', { container_id: id });
    await berthd.client.call('UpdateContainerResources', { container_id: id, linux: { cpu_shares: '512' } } as never);
    await berthd.client.call('ExecSync', { container_id: id, cmd: ['true'], timeout: '10' } as never);
    await berthd.client.call('StopContainer', { container_id: id, timeout: '0' } as never);
    await berthd.client.call('RemoveContainer', { container_id: id });
    const line = berthd.logs().split('\n').find((l) => l.includes('metrics served at /metrics'));
    assert.ok(line, 'berthd logs its metrics port');
    const port = (JSON.parse(line) as { port: number }).port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const operation of ['create', 'start', 'update', 'exec', 'kill', 'delete']) {
      const count = new RegExp(`^berth_oci_runtime_call_duration_seconds_count\\{operation="${operation}",runtime="runc",outcome="ok"\\} (\\d+)$`, 'm').exec(text);
      assert.ok(count && Number(count[1]) >= 1, `${operation} is timed:\n${text.split('\n').filter((l) => l.startsWith('berth_oci')).join('\n')}`);
    }
  });

  test("PodSandboxStatus answers its containers' statuses as ContainerStatus does", async () => {
    const id = await create('failing', ['sh', '-c', 'exit 3']);
    await berthd.client.call('StartContainer', { container_id: id });
    await waitState(id, 'CONTAINER_EXITED');
    const own = await status(id);
    assert.equal(own.reason, 'Error');
    assert.match(own.image_ref, /@sha256:[0-9a-f]{64}$/);
    const pod = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId, verbose: false });
    const listed = pod.containers_statuses.find((c) => c.id === id);
    assert.deepEqual(listed, own);
    await berthd.client.call('RemoveContainer', { container_id: id });
    const after = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId, verbose: false });
    assert.ok(!after.containers_statuses.some((c) => c.id === id));
  });

  test('bad requests are INVALID_ARGUMENT naming the field, and create nothing', async () => {
    const cases: [string, Record<string, unknown>][] = [
      // containerd's answer too: a group without a user is meaningless.
      ['config.linux.security_context.run_as_group', { pod_sandbox_id: podId, config: { ...config('bad1', ['true']), linux: { security_context: { run_as_group: { value: '1002' } } } }, sandbox_config: sandboxConfig }],
      ['sandbox_config', { pod_sandbox_id: podId, config: config('bad2', ['true']) }],
      ['config.metadata', { pod_sandbox_id: podId, config: { ...config('bad3', ['true']), metadata: null }, sandbox_config: sandboxConfig }],
      ['config.log_path', { pod_sandbox_id: podId, config: { ...config('bad4', ['true']), log_path: '../escape.log' }, sandbox_config: sandboxConfig }],
      ['config.linux.resources.oom_score_adj', { pod_sandbox_id: podId, config: { ...config('bad5', ['true']), linux: { resources: { oom_score_adj: '5000' } } }, sandbox_config: sandboxConfig }],
    ];
    for (const [field, request] of cases) {
      await assert.rejects(berthd.client.call('CreateContainer', request as never), (e: Error) => grpcCode(e) === INVALID_ARGUMENT && e.message.includes(field), field);
    }
    const { containers } = await berthd.client.call('ListContainers', {});
    assert.ok(!containers.some((c) => c.metadata?.name.startsWith('bad')));
    assert.equal(existsSync(join(logDir, '..', 'escape.log')), false);
  });

  test('a config without linux runs with the defaults (as crictl and critest send it)', async () => {
    const id = await create('nolinux', ['sh', '-c', 'echo plain'], { linux: null });
    await berthd.client.call('StartContainer', { container_id: id });
    await waitState(id, 'CONTAINER_EXITED');
    const st = await status(id);
    assert.equal(st.exit_code, 0);
    assert.match(readFileSync(join(logDir, 'nolinux.log'), 'utf8'), / stdout F plain\n/);
    await berthd.client.call('RemoveContainer', { container_id: id });
  });

  test('a container that exits by itself is listed exited with its exit code, with no status call in between', async () => {
    const id = await create('exits-alone', ['sh', '-c', 'exit 3']);
    await berthd.client.call('StartContainer', { container_id: id });
    let listed;
    for (let i = 0; i < 600; i++) {
      const { containers } = await berthd.client.call('ListContainers', { filter: { id } } as never);
      listed = containers[0];
      if (listed?.state === 'CONTAINER_EXITED') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(listed?.state, 'CONTAINER_EXITED');
    const st = await status(id);
    assert.equal(st.exit_code, 3);
    assert.equal(st.reason, 'Error');
    await berthd.client.call('RemoveContainer', { container_id: id });
  });

  test('stopping or removing a container that does not exist succeeds', async () => {
    const unknown = '01b0e81c-f72a-4784-8063-f265879ab4b6';
    await berthd.client.call('StopContainer', { container_id: unknown, timeout: '0' } as never);
    await berthd.client.call('RemoveContainer', { container_id: unknown });
    await assert.rejects(berthd.client.call('StartContainer', { container_id: unknown }), (e) => grpcCode(e) === NOT_FOUND);
  });

  test('privileged and ALL give every capability berthd holds; one it lacks is left out, not fatal', async () => {
    const held = heldCapabilityMask();
    const hex = held.toString(16).padStart(16, '0');
    const privPodConfig = podConfig('ctrpriv', {
      log_directory: logDir,
      linux: { cgroup_parent: '', security_context: { privileged: true, namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
    } as never);
    const privPod = (await berthd.client.call('RunPodSandbox', { config: privPodConfig } as never)).pod_sandbox_id;
    try {
      const run = async (pod: string, podCfg: unknown, name: string, securityContext: Record<string, unknown>): Promise<string> => {
        const c = { ...config(name, ['grep', 'CapBnd', '/proc/self/status']), linux: { security_context: securityContext } };
        const { container_id } = await berthd.client.call('CreateContainer', { pod_sandbox_id: pod, config: c, sandbox_config: podCfg } as never);
        await berthd.client.call('StartContainer', { container_id });
        await waitState(container_id, 'CONTAINER_EXITED');
        assert.equal((await status(container_id)).exit_code, 0, name);
        await berthd.client.call('RemoveContainer', { container_id });
        return readFileSync(join(logDir, `${name}.log`), 'utf8');
      };
      assert.match(await run(privPod, privPodConfig, 'privcaps', { privileged: true }), new RegExp(`CapBnd:\\s+${hex}\\n`));
      assert.match(await run(podId, sandboxConfig, 'allcaps', { capabilities: { add_capabilities: ['ALL'] } }), new RegExp(`CapBnd:\\s+${hex}\\n`));
      // CAP_SYS_RESOURCE (24) is missing from root's bounding set on some hosts (this one): asked for, it is dropped.
      const sysResource = await run(podId, sandboxConfig, 'sysres', { capabilities: { add_capabilities: ['SYS_RESOURCE'], drop_capabilities: ['ALL'] } });
      const expected = held & (1n << 24n);
      assert.match(sysResource, new RegExp(`CapBnd:\\s+${expected.toString(16).padStart(16, '0')}\\n`));
    } finally {
      await berthd.client.call('StopPodSandbox', { pod_sandbox_id: privPod });
      await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: privPod });
    }
  });

  test('a SIGKILLed berthd finds running containers, exits that happened while down, and every log line', async () => {
    const ticker = await create('ticker', ['sh', '-c', 'i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done']);
    const quitter = await create('quitter', ['sh', '-c', 'sleep 1; exit 5']);
    for (const id of [ticker, quitter]) await berthd.client.call('StartContainer', { container_id: id });
    await berthd.stop('SIGKILL');
    // Wait (bounded) for conmon to record the quitter's exit while berthd is down.
    const exitFile = join(berthd.root, 'containers', quitter, 'exit');
    for (let i = 0; i < 300 && !existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(exitFile));
    const logFrom = berthd.logs().length;
    await berthd.start();
    // Every container a list shows is counted as recovered (counted without making their views).
    const listed = (await berthd.client.call('ListContainers', {})).containers.length;
    await berthd.waitForLog(/berthd serving CRI v1/, 20_000, logFrom);
    const line = berthd.logs().slice(logFrom).split('\n').find((l) => l.includes('metrics served at /metrics'));
    const text = await (await fetch(`http://127.0.0.1:${(JSON.parse(line!) as { port: number }).port}/metrics`)).text();
    assert.equal(Number(/^berth_restart_recoveries_total\{kind="container",outcome="recovered"\} (\d+)$/m.exec(text)?.[1]), listed);
    const q = await status(quitter);
    assert.equal(q.state, 'CONTAINER_EXITED');
    assert.equal(q.exit_code, 5);
    assert.equal(q.reason, 'Error');
    assert.equal((await status(ticker)).state, 'CONTAINER_RUNNING');
    const exec = await berthd.client.call('ExecSync', { container_id: ticker, cmd: ['echo', 'alive'], timeout: '10' } as never);
    assert.equal(Buffer.from(exec.stdout).toString(), 'alive\n');
    await berthd.client.call('StopContainer', { container_id: ticker, timeout: '0' } as never);
    const numbers = readFileSync(join(logDir, 'ticker.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => Number(/ line(\d+)$/.exec(l)?.[1]));
    assert.ok(numbers.length > 10);
    numbers.forEach((n, i) => assert.equal(n, i, 'a log line is missing'));
  });
});

/** Bounding ∩ effective set of this (root) process, as berthd, its sibling, has them. */
function heldCapabilityMask(): bigint {
  const status = readFileSync('/proc/self/status', 'utf8');
  const mask = (f: string) => BigInt(`0x${new RegExp(`^${f}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]}`);
  const lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  return mask('CapBnd') & mask('CapEff') & ((1n << BigInt(lastCap + 1)) - 1n);
}

function conmonsUnder(root: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('conmon') && argv.some((a) => a.startsWith(root))) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}
