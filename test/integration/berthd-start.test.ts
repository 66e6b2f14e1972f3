// berthd's start and restart: it runs its bundle with its V8 flags when its
// launcher starts it; a restart answers its first calls with every container of many
// pods as it really is (running, exited while berthd was down, or lost with
// its monitor); the host's programs (--version, criu check) are not run again
// at a restart unless a binary changed; doctor's other checks are still
// logged once berthd serves.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { conmonFiles } from '../../runtime/oci/conmon';
import { BERTHD_NODE_FLAGS } from '../../shim/node-flags';
import { DEV_SNAPSHOT_PATH } from '../../shim/berthd-launcher';
import { BerthdProcess, startBerthd } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const REAL_RUNC = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p)) ?? 'runc';
const POD_COUNT = 12;

describe('berthd start', () => {
  const dir = mkdtempSync('/tmp/berth-start-');
  let registry: TestRegistry;
  let image = '';

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/start:v1')).reference;
  });

  after(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('berthd started by its launcher runs its bundle\'s runner with berthd\'s V8 flags, from the startup snapshot', async () => {
    const berthd = await startBerthd();
    try {
      const argv = readFileSync(`/proc/${berthd.pid}/cmdline`, 'utf8').split('\0');
      assert.equal(argv[0], process.execPath);
      assert.deepEqual(argv.slice(1, 1 + BERTHD_NODE_FLAGS.length), [...BERTHD_NODE_FLAGS]);
      const rest = argv.slice(1 + BERTHD_NODE_FLAGS.length);
      assert.deepEqual(rest.slice(0, 2), ['--snapshot-blob', DEV_SNAPSHOT_PATH]);
      assert.match(rest[2], /dist\/shim\/bundle\/bundle-runner\.js$/);
    } finally {
      await berthd.cleanup();
    }
  });

  test('a restart answers its first ListContainers with every container as it is: running, exited while down, or lost with its monitor', async () => {
    const berthd = await startBerthd();
    try {
      await berthd.client.call('PullImage', { image: { image } } as never);
      const run = async (name: string, command: string[]): Promise<string> => {
        const config = podConfig(name, {
          linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE' } }, sysctls: {} },
        } as never);
        const podId = (await berthd.client.call('RunPodSandbox', { config } as never)).pod_sandbox_id;
        const { container_id } = await berthd.client.call('CreateContainer', {
          pod_sandbox_id: podId,
          config: { metadata: { name, attempt: 0 }, image: { image }, command, linux: {} },
          sandbox_config: config,
        } as never);
        await berthd.client.call('StartContainer', { container_id });
        return container_id;
      };
      const sleepers: string[] = [];
      for (let i = 0; i < POD_COUNT; i++) sleepers.push(await run(`sleeper-${i}`, ['sleep', '600']));
      const quitter = await run('quitter', ['sleep', '600']);
      const orphan = await run('orphan', ['sleep', '600']);
      await berthd.stop();

      // While berthd is down: one container exits (conmon records it), another loses its monitor.
      const bundle = (id: string): string => join(berthd.root, 'containers', id);
      const conmonPid = Number(readFileSync(conmonFiles.conmonPid(bundle(orphan)), 'utf8').trim());
      process.kill(conmonPid, 'SIGKILL');
      const quitterPid = Number(readFileSync(conmonFiles.containerPid(bundle(quitter)), 'utf8').trim());
      process.kill(quitterPid, 'SIGKILL');
      for (let i = 0; i < 300 && !existsSync(conmonFiles.exit(bundle(quitter))); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(existsSync(conmonFiles.exit(bundle(quitter))), 'conmon recorded the exit');

      await berthd.start();
      const { containers } = await berthd.client.call('ListContainers', {});
      const stateOf = new Map(containers.map((c) => [c.id, c.state]));
      for (const id of sleepers) assert.equal(stateOf.get(id), 'CONTAINER_RUNNING', id);
      assert.equal(stateOf.get(quitter), 'CONTAINER_EXITED');
      assert.equal(stateOf.get(orphan), 'CONTAINER_EXITED');
      const quit = (await berthd.client.call('ContainerStatus', { container_id: quitter })).status!;
      assert.equal(quit.exit_code, 137);
      const lost = (await berthd.client.call('ContainerStatus', { container_id: orphan })).status!;
      assert.equal(lost.exit_code, 255);
      assert.match(lost.message, /conmon/);
      assert.match(berthd.logs(), /containers recovered: 12 running, 0 created, 2 exited/);
    } finally {
      const { items } = await berthd.client.call('ListPodSandbox', {}).catch(() => ({ items: [] }));
      for (const pod of items) {
        await berthd.client.call('StopPodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
        await berthd.client.call('RemovePodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
      }
      await berthd.cleanup();
    }
  });

  test('a restart runs no host program again (runc --version, criu check) unless its binary changed, and logs every host check once serving', async () => {
    const calls = join(dir, 'calls.log');
    // Stand-ins that log each time they are asked, then answer as runc and as a criu that cannot checkpoint here.
    const fakeRunc = join(dir, 'runc');
    writeFileSync(fakeRunc, `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "runc --version" >> ${calls}; fi\nexec ${REAL_RUNC} "$@"\n`);
    const fakeCriu = join(dir, 'criu');
    writeFileSync(fakeCriu, `#!/bin/sh\necho "criu $1" >> ${calls}\nif [ "$1" = "--version" ]; then echo "Version: 3.17.1"; exit 0; fi\necho "Error (criu/kerndat.c:1): not on this kernel"; exit 1\n`);
    for (const f of [fakeRunc, fakeCriu]) chmodSync(f, 0o755);
    const berthd = new BerthdProcess({ extraToml: `[oci]\ncriu = ${JSON.stringify(fakeCriu)}\n[oci.runtimes.runc]\npath = ${JSON.stringify(fakeRunc)}\n` });
    const asked = (line: string): number => readFileSync(calls, 'utf8').split('\n').filter((l) => l === line).length;
    const startAndSettle = async (): Promise<void> => {
      const from = berthd.logs().length;
      await berthd.start();
      // Doctor's checks other than the fatal ones run once the socket is up, then the answers are kept.
      await berthd.waitForLog(/host checks: \d+ ok, \d+ warnings, \d+ failures/, 20_000, from);
      await berthd.stop();
    };
    try {
      await startAndSettle();
      const first = { runc: asked('runc --version'), check: asked('criu check') };
      assert.ok(first.runc >= 1 && first.check >= 1, `first start asked: ${readFileSync(calls, 'utf8')}`);
      assert.match(berthd.logs(), /host check: criu 3\.17\.1 .* check failed/);
      await startAndSettle();
      assert.deepEqual({ runc: asked('runc --version'), check: asked('criu check') }, first, 'a restart with the same binaries runs neither');
      const later = new Date(Date.now() + 5000);
      utimesSync(fakeRunc, later, later);
      await startAndSettle();
      assert.equal(asked('runc --version') > first.runc, true, 'a changed runc is asked again');
      assert.equal(asked('criu check'), first.check, 'criu did not change');
    } finally {
      await berthd.cleanup();
    }
  });
});
