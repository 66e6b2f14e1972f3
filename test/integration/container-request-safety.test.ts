// What a CRI request may not do to the host, through a real berthd: exec
// output that would not fit one gRPC answer, timeouts beyond what a Node
// timer holds, a container create racing its pod's removal.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig, processGone } from './sandbox-fixture';

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;

/** conmon processes whose bundle lies under `root` (berth's containers dir). */
export function conmonsUnder(root: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('conmon') && argv.some((a) => a.startsWith(root))) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out.filter((pid) => !processGone(pid));
}

/** conmons under `root` once those already SIGKILLed are reaped (removal kills conmon without waiting). */
async function conmonsGone(root: string): Promise<number[]> {
  for (let i = 0; i < 100 && conmonsUnder(root).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return conmonsUnder(root);
}

describe('container requests and the host', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  const logDir = mkdtempSync('/tmp/berth-reqsafety-logs-');

  const hostNetworkPod = (name: string, pid: 'CONTAINER' | 'POD' = 'CONTAINER') =>
    podConfig(name, {
      log_directory: join(logDir, name),
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid, ipc: 'POD' } }, sysctls: {} },
    } as never);

  const runPod = async (config: ReturnType<typeof hostNetworkPod>): Promise<string> =>
    (await berthd.client.call('RunPodSandbox', { config } as never)).pod_sandbox_id;

  const containerConfig = (name: string, command: string[], extra: Record<string, unknown> = {}) => ({
    metadata: { name, attempt: 0 },
    image: { image },
    command,
    log_path: `${name}.log`,
    linux: {},
    ...extra,
  });

  const runContainer = async (podId: string, sandboxConfig: unknown, name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> => {
    const { container_id } = await berthd.client.call('CreateContainer', { pod_sandbox_id: podId, config: containerConfig(name, command, extra), sandbox_config: sandboxConfig } as never);
    await berthd.client.call('StartContainer', { container_id });
    return container_id;
  };

  const removePod = async (podId: string): Promise<void> => {
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/reqsafety:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } } as never);
  });

  after(async () => {
    if (berthd) {
      try {
        const { items } = await berthd.client.call('ListPodSandbox', {});
        for (const pod of items) await removePod(pod.id);
      } catch {
        // best effort; cleanup() still stops berthd
      }
      const root = berthd.root;
      await berthd.cleanup();
      assert.deepEqual(await conmonsGone(root), [], 'no conmon outlives the test');
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('an exec printing 20 MiB gets a truncated answer within the send limit, not RESOURCE_EXHAUSTED', async () => {
    const sandboxConfig = hostNetworkPod('bigexec');
    const podId = await runPod(sandboxConfig);
    try {
      const id = await runContainer(podId, sandboxConfig, 'big', ['sleep', '600']);
      const cmd = ['sh', '-c', 'head -c 20971520 /dev/zero; echo tail >&2'];
      const res = await berthd.client.call('ExecSync', { container_id: id, cmd, timeout: '60' } as never);
      assert.equal(res.exit_code, 0);
      const total = Buffer.from(res.stdout).length + Buffer.from(res.stderr).length;
      assert.ok(total < 16 * 1024 * 1024, `answer fits the 16 MiB send limit (${total} bytes)`);
      assert.ok(Buffer.from(res.stdout).length > 15 * 1024 * 1024, 'most of stdout is kept');
      assert.equal(Buffer.from(res.stderr).toString(), 'tail\n', 'stderr is kept whole');
      assert.match(berthd.logs(), /ExecSync: output truncated to fit grpc.max_send_message_bytes/);
    } finally {
      await removePod(podId);
    }
  });

  test('an ExecSync timeout of 2^31/1000+1 seconds does not fire at once', async () => {
    const sandboxConfig = hostNetworkPod('longtimeout');
    const podId = await runPod(sandboxConfig);
    try {
      const id = await runContainer(podId, sandboxConfig, 'sleeper', ['sleep', '600']);
      const timeout = String(Math.floor(2 ** 31 / 1000) + 1);
      const res = await berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'sleep 1; echo finished'], timeout } as never);
      assert.equal(Buffer.from(res.stdout).toString(), 'finished\n');
      const huge = await berthd.client.call('ExecSync', { container_id: id, cmd: ['echo', 'ok'], timeout: '9223372036854775807' } as never);
      assert.equal(Buffer.from(huge.stdout).toString(), 'ok\n', 'the largest int64 is clamped, not refused');
      const polite = await runContainer(podId, sandboxConfig, 'polite', ['sh', '-c', 'trap "exit 0" TERM; touch /tmp/trapped; sleep 600 & wait']);
      // A pid 1 ignores SIGTERM until its trap is set: stop only once it is.
      for (let i = 0; i < 200; i++) {
        const probe = await berthd.client.call('ExecSync', { container_id: polite, cmd: ['test', '-e', '/tmp/trapped'], timeout: '10' } as never);
        if (probe.exit_code === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await berthd.client.call('StopContainer', { container_id: polite, timeout: '9223372036854775807' } as never);
      const st = await berthd.client.call('ContainerStatus', { container_id: polite });
      assert.equal(st.status?.state, 'CONTAINER_EXITED');
      assert.equal(st.status?.exit_code, 0, 'stopped by its stop signal, within the clamped timeout');
    } finally {
      await removePod(podId);
    }
  });

  test("annotations runc or crun act on (org.systemd.property.*, run.oci.*, ...) do not reach config.json unless the handler allows them", async () => {
    const sandboxConfig = hostNetworkPod('annotations');
    const podId = await runPod(sandboxConfig);
    try {
      const annotations = {
        'org.systemd.property.CPUWeight': '10000',
        'run.oci.keep_original_groups': '1',
        'io.kubernetes.cri-o.Devices': '/dev/kmsg',
        'io.kubernetes.cri.sandbox-id': 'spoofed',
        'example.com/team': 'web',
      };
      const { container_id } = await berthd.client.call('CreateContainer', {
        pod_sandbox_id: podId,
        config: containerConfig('annotated', ['sleep', '600'], { annotations }),
        sandbox_config: sandboxConfig,
      } as never);
      const spec = JSON.parse(readFileSync(join(berthd.root, 'containers', container_id, 'config.json'), 'utf8')) as { annotations: Record<string, string> };
      assert.equal(spec.annotations['example.com/team'], 'web');
      assert.equal(spec.annotations['io.kubernetes.cri.sandbox-id'], podId, "berth's own key is berth's");
      for (const key of ['org.systemd.property.CPUWeight', 'run.oci.keep_original_groups', 'io.kubernetes.cri-o.Devices']) {
        assert.equal(spec.annotations[key], undefined, `${key} is left out`);
      }
      const status = await berthd.client.call('ContainerStatus', { container_id });
      assert.equal(status.status?.annotations['run.oci.keep_original_groups'], '1', 'the CRI status still reports what was asked');
    } finally {
      await removePod(podId);
    }
  });

  test('a log_directory or log_path with a symbolic link on the way is refused, and nothing is made through the link', async () => {
    const outside = mkdtempSync('/tmp/berth-reqsafety-outside-');
    try {
      symlinkSync(outside, join(logDir, 'linked'));
      const viaLink = hostNetworkPod('loglink');
      viaLink.log_directory = join(logDir, 'linked', 'pod');
      const refused = await runPod(viaLink).then(() => undefined, (err: unknown) => err);
      assert.equal(grpcCode(refused), INVALID_ARGUMENT, `RunPodSandbox: ${String(refused)}`);
      assert.match(String(refused), /log_directory/);

      const sandboxConfig = hostNetworkPod('loglink2');
      const podId = await runPod(sandboxConfig);
      try {
        symlinkSync(outside, join(logDir, 'loglink2', 'evil'));
        const create = await berthd.client
          .call('CreateContainer', { pod_sandbox_id: podId, config: containerConfig('evil', ['true'], { log_path: 'evil/0.log' }), sandbox_config: sandboxConfig } as never)
          .then(() => undefined, (err: unknown) => err);
        assert.equal(grpcCode(create), INVALID_ARGUMENT, `CreateContainer: ${String(create)}`);
        assert.match(String(create), /symbolic link/);
        const { containers } = await berthd.client.call('ListContainers', { filter: { pod_sandbox_id: podId } } as never);
        assert.deepEqual(containers, [], 'nothing was created');
      } finally {
        await removePod(podId);
      }
      assert.deepEqual(readdirSync(outside), [], 'nothing was made through the links');
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  test('a log path that becomes a symbolic link between create and ReopenContainerLog is not reopened through it', async () => {
    const outside = mkdtempSync('/tmp/berth-reqsafety-outside-');
    const sandboxConfig = hostNetworkPod('reopen');
    const podId = await runPod(sandboxConfig);
    try {
      const id = await runContainer(podId, sandboxConfig, 'rot', ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'], { log_path: 'rot/0.log' });
      const dir = join(logDir, 'reopen', 'rot');
      // A normal rotation reopens.
      renameSync(join(dir, '0.log'), join(dir, '0.log.1'));
      await berthd.client.call('ReopenContainerLog', { container_id: id });
      assert.ok(statSync(join(dir, '0.log')).isFile());

      // The reopen's temporary file planted as a link to a host file conmon would truncate.
      const victim = join(outside, 'victim');
      writeFileSync(victim, 'precious\n');
      renameSync(join(dir, '0.log'), join(dir, '0.log.2'));
      symlinkSync(victim, join(dir, '0.log.tmp'));
      const tmpLink = await berthd.client.call('ReopenContainerLog', { container_id: id }).then(() => undefined, (err: unknown) => err);
      assert.equal(grpcCode(tmpLink), FAILED_PRECONDITION, `ReopenContainerLog: ${String(tmpLink)}`);
      assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'the host file is untouched');
      rmSync(join(dir, '0.log.tmp'));

      // The container's log directory replaced by a link out of the log tree.
      renameSync(dir, `${dir}.old`);
      symlinkSync(outside, dir);
      const dirLink = await berthd.client.call('ReopenContainerLog', { container_id: id }).then(() => undefined, (err: unknown) => err);
      assert.equal(grpcCode(dirLink), FAILED_PRECONDITION, `ReopenContainerLog: ${String(dirLink)}`);
      assert.deepEqual(readdirSync(outside), ['victim'], 'no log was made through the link');
    } finally {
      await removePod(podId);
      rmSync(outside, { recursive: true, force: true });
    }
  });

  test('a create and a RemovePodSandbox started together never leave a container outliving its pod', async () => {
    for (let round = 0; round < 3; round++) {
      const sandboxConfig = hostNetworkPod(`race${round}`);
      const podId = await runPod(sandboxConfig);
      const create = berthd.client.call('CreateContainer', {
        pod_sandbox_id: podId,
        config: containerConfig('racer', ['sleep', '600']),
        sandbox_config: sandboxConfig,
      } as never);
      const remove = berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
      const [created, removed] = await Promise.allSettled([create, remove]);
      assert.equal(removed.status, 'fulfilled', `RemovePodSandbox succeeds: ${removed.status === 'rejected' ? String(removed.reason) : ''}`);
      if (created.status === 'rejected') {
        assert.ok([NOT_FOUND, FAILED_PRECONDITION].includes(grpcCode(created.reason) ?? -1), `a refused create is NOT_FOUND or FAILED_PRECONDITION: ${String(created.reason)}`);
      }
      const { containers } = await berthd.client.call('ListContainers', {});
      assert.deepEqual(containers.filter((c) => c.pod_sandbox_id === podId), [], 'no container of the removed pod is left');
      assert.deepEqual(await conmonsGone(berthd.root), [], 'no conmon of the removed pod runs');
      const late = await berthd.client
        .call('CreateContainer', { pod_sandbox_id: podId, config: containerConfig('late', ['true']), sandbox_config: sandboxConfig } as never)
        .then(() => undefined, (err: unknown) => grpcCode(err));
      assert.equal(late, NOT_FOUND, 'a create after the removal is NOT_FOUND');
    }
  });
});
