// PID namespaces a container joins, through a real berthd: a pod's shared one
// is pinned like net/ipc/uts and checked right before each use, a TARGET
// container's is resolved through a pidfd and the target's recorded start
// time; a dead holder or target whose pid was reused by a host process never
// hands that process's namespace (the host's) to a new container.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadNative } from '../../native';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { mountsUnder, podConfig, processGone } from './sandbox-fixture';

const FAILED_PRECONDITION = 9;
const native = loadNative();

/** A host process (in the host's PID namespace) started with exactly `pid`, through ns_last_pid; undefined if other forks kept taking it. */
async function spawnWithPid(pid: number): Promise<ChildProcess | undefined> {
  for (let attempt = 0; attempt < 200; attempt++) {
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    if (child.pid === pid) return child;
    child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 400 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(!existsSync(`/proc/${pid}`), `process ${pid} was reaped`);
}

const pidNamespaceInode = (pid: number | 'self'): number => statSync(`/proc/${pid}/ns/pid`).ino;

describe('PID namespaces containers join', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  const strangers: ChildProcess[] = [];
  const logDir = mkdtempSync('/tmp/berth-pidns-logs-');

  const pod = (name: string, pid: 'POD' | 'CONTAINER') =>
    podConfig(name, {
      log_directory: join(logDir, name),
      linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid, ipc: 'POD' } }, sysctls: {} },
    } as never);

  const create = async (podId: string, sandboxConfig: unknown, name: string, nsOptions: Record<string, unknown>): Promise<string> =>
    (
      await berthd.client.call('CreateContainer', {
        pod_sandbox_id: podId,
        config: { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '600'], log_path: `${name}.log`, linux: { security_context: { namespace_options: nsOptions } } },
        sandbox_config: sandboxConfig,
      } as never)
    ).container_id;

  const start = async (id: string): Promise<number> => {
    await berthd.client.call('StartContainer', { container_id: id });
    const st = await berthd.client.call('ContainerStatus', { container_id: id, verbose: true });
    return (JSON.parse(st.info.info) as { pid: number }).pid;
  };

  const execNs = async (id: string): Promise<string> =>
    Buffer.from((await berthd.client.call('ExecSync', { container_id: id, cmd: ['readlink', '/proc/self/ns/pid'], timeout: '10' } as never)).stdout).toString().trim();

  const removePod = async (podId: string): Promise<void> => {
    await berthd.client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  };

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/pidns:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } } as never);
  });

  after(async () => {
    for (const s of strangers) s.kill('SIGKILL');
    if (berthd) {
      try {
        const { items } = await berthd.client.call('ListPodSandbox', {});
        for (const p of items) await removePod(p.id);
      } catch {
        // best effort
      }
      await berthd.cleanup();
    }
    await registry?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  test("a pod's shared PID namespace is pinned under the namespace dir, joined through the pin, and unpinned at removal", async () => {
    const sandboxConfig = pod('shared', 'POD');
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    const status = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId, verbose: true });
    const info = JSON.parse(status.info.info) as { namespaces: { pid: string }; pidNamespace: { inode: number; holderPid: number } };
    const pin = join(berthd.dir, 'ns', 'pid', podId);
    assert.equal(info.namespaces.pid, pin);
    assert.deepEqual(native.namespaceIdentity(pin), { type: 'pid', inode: info.pidNamespace.inode });
    assert.equal(pidNamespaceInode(info.pidNamespace.holderPid), info.pidNamespace.inode, "the pin holds the holder's namespace");
    const id = await create(podId, sandboxConfig, 'member', { pid: 'POD' });
    await start(id);
    assert.equal(await execNs(id), `pid:[${info.pidNamespace.inode}]`);
    await removePod(podId);
    assert.equal(existsSync(pin), false, 'the pin file is gone');
    assert.deepEqual(mountsUnder(pin), [], 'nothing is mounted there');
  });

  test("a container is refused, not put in a stranger's PID namespace, when the pod's holder died and its pid was reused", async () => {
    const sandboxConfig = pod('orphaned', 'POD');
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    try {
      const status = await berthd.client.call('PodSandboxStatus', { pod_sandbox_id: podId, verbose: true });
      const holder = (JSON.parse(status.info.info) as { pidNamespace: { holderPid: number } }).pidNamespace.holderPid;
      process.kill(holder, 'SIGKILL');
      await waitGone(holder);
      const stranger = await spawnWithPid(holder);
      assert.ok(stranger, `a host process took pid ${holder}`);
      strangers.push(stranger);
      assert.equal(pidNamespaceInode(holder), pidNamespaceInode('self'), "the reused pid is in the host's PID namespace");
      const refused = await create(podId, sandboxConfig, 'late', { pid: 'POD' }).then(() => undefined, (err: unknown) => err);
      assert.equal(grpcCode(refused), FAILED_PRECONDITION, `create is FAILED_PRECONDITION: ${String(refused)}`);
      const { containers } = await berthd.client.call('ListContainers', { filter: { pod_sandbox_id: podId } } as never);
      assert.deepEqual(containers, [], 'nothing was created');
    } finally {
      await removePod(podId);
    }
  });

  test('a PID namespace pin no pod owns (a crash before its journal row) is unpinned when berthd starts again', async () => {
    const stray = join(berthd.dir, 'ns', 'pid', 'f'.repeat(64));
    native.pinPidNamespace(process.pid, stray);
    assert.equal(native.namespaceIdentity(stray).type, 'pid');
    await berthd.stop('SIGKILL');
    await berthd.start();
    assert.equal(existsSync(stray), false, 'the stray pin is gone');
    assert.deepEqual(mountsUnder(stray), []);
  });

  test("a TARGET container joins the running target's namespace through a pin released after create", async () => {
    const sandboxConfig = pod('target-ok', 'CONTAINER');
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    try {
      const target = await create(podId, sandboxConfig, 'target', { pid: 'CONTAINER' });
      const targetPid = await start(target);
      const debug = await create(podId, sandboxConfig, 'debug', { pid: 'TARGET', target_id: target });
      await start(debug);
      assert.equal(await execNs(debug), `pid:[${pidNamespaceInode(targetPid)}]`);
      assert.deepEqual(mountsUnder(join(berthd.root, 'containers', debug)).filter((l) => l.includes('target-pidns')), [], 'the pin is released');
    } finally {
      await removePod(podId);
    }
  });

  test("a TARGET container is refused when the target's init died unnoticed and its pid was reused", async () => {
    const sandboxConfig = pod('target-gone', 'CONTAINER');
    const podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
    try {
      const target = await create(podId, sandboxConfig, 'target', { pid: 'CONTAINER' });
      const targetPid = await start(target);
      // Its monitor first, so no exit is recorded and berth still sees it running.
      const conmonPid = Number(readFileSync(join(berthd.root, 'containers', target, 'conmon.pid'), 'utf8'));
      process.kill(conmonPid, 'SIGKILL');
      process.kill(targetPid, 'SIGKILL');
      await waitGone(targetPid);
      assert.ok(processGone(conmonPid));
      const stranger = await spawnWithPid(targetPid);
      assert.ok(stranger, `a host process took pid ${targetPid}`);
      strangers.push(stranger);
      const refused = await create(podId, sandboxConfig, 'debug', { pid: 'TARGET', target_id: target }).then(() => undefined, (err: unknown) => err);
      assert.equal(grpcCode(refused), FAILED_PRECONDITION, `create is FAILED_PRECONDITION: ${String(refused)}`);
      const { containers } = await berthd.client.call('ListContainers', { filter: { pod_sandbox_id: podId } } as never);
      assert.deepEqual(containers.map((c) => c.metadata?.name), ['target'], 'nothing else was created');
    } finally {
      // Gone before the pod's removal: berth's exit wait would take the stranger for the target's init.
      for (const s of strangers.splice(0)) s.kill('SIGKILL');
      await removePod(podId);
    }
  });
});
