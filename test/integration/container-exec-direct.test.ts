// ExecSync through berth-exec (native/exec) instead of `runc exec`: the
// process must be what runc exec makes, i.e. run as the container's init
// does (user, groups, capabilities, no_new_privs, namespaces, cgroups,
// working directory), and a container berth-exec cannot describe (a seccomp
// filter) keeps going through runc. Compared inside the container with its
// pid 1, whatever path the exec took.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXEC_HELPER_NAME, NATIVE_DIR } from '../../native';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const STATUS_FIELDS = ['Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'];
const NAMESPACES = ['ipc', 'uts', 'net', 'mnt', 'pid', 'cgroup'];

describe('ExecSync through berth-exec', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  let image = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  const logDir = mkdtempSync('/tmp/berth-exec-logs-');

  const start = async (name: string, securityContext: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> => {
    const config = {
      metadata: { name, attempt: 0 },
      image: { image },
      command: ['sleep', '600'],
      log_path: `${name}.log`,
      linux: { resources: {}, security_context: securityContext },
      ...extra,
    };
    const { container_id } = await berthd.client.call('CreateContainer', { pod_sandbox_id: podId, config, sandbox_config: sandboxConfig } as never);
    await berthd.client.call('StartContainer', { container_id });
    return container_id;
  };

  const exec = async (id: string, cmd: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> => {
    const r = await berthd.client.call('ExecSync', { container_id: id, cmd, timeout: '20' } as never);
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exit_code };
  };

  /** The exec'd process's view of itself next to the container's pid 1, field by field. */
  const compareWithInit = async (id: string): Promise<Record<string, [string, string]>> => {
    const fields = (status: string): Record<string, string> =>
      Object.fromEntries(status.split('\n').map((l) => l.split(':\t')).filter(([k]) => STATUS_FIELDS.includes(k)).map(([k, v]) => [k, v.trim()]));
    const self = fields((await exec(id, ['cat', '/proc/self/status'])).stdout);
    const init = fields((await exec(id, ['cat', '/proc/1/status'])).stdout);
    const out: Record<string, [string, string]> = {};
    for (const f of STATUS_FIELDS) out[f] = [self[f], init[f]];
    for (const ns of NAMESPACES) {
      out[`ns ${ns}`] = [(await exec(id, ['readlink', `/proc/self/ns/${ns}`])).stdout.trim(), (await exec(id, ['readlink', `/proc/1/ns/${ns}`])).stdout.trim()];
    }
    out.cgroup = [(await exec(id, ['cat', '/proc/self/cgroup'])).stdout, (await exec(id, ['cat', '/proc/1/cgroup'])).stdout];
    return out;
  };

  const helperRuns = (): number => berthd.logs().split('\n').filter((l) => l.includes('ExecSync through berth-exec')).length;

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/exec-direct:v1')).reference;
    berthd = await startBerthd();
    await berthd.client.call('PullImage', { image: { image } } as never);
    sandboxConfig = podConfig('execpod', { log_directory: logDir } as never);
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig } as never)).pod_sandbox_id;
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

  test('a non-root container with added and dropped capabilities and no_new_privs: the exec runs as its init does, in its namespaces and cgroups', async () => {
    const id = await start(
      'nonroot',
      {
        run_as_user: { value: '1000' },
        run_as_group: { value: '1000' },
        supplemental_groups: ['2000', '3000'],
        no_new_privs: true,
        capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: ['CHOWN'], add_ambient_capabilities: [] },
      },
      { working_dir: '/tmp', envs: [{ key: 'FROM_REQUEST', value: Buffer.from('yes') }] },
    );
    const before = helperRuns();
    for (const [field, [self, init]] of Object.entries(await compareWithInit(id))) assert.equal(self, init, `${field} of the exec'd process`);
    assert.ok(helperRuns() > before, 'berth-exec ran these execs');
    const env = (await exec(id, ['env'])).stdout;
    assert.match(env, /^FROM_REQUEST=yes$/m);
    assert.match(env, /^HOME=\//m);
    assert.equal((await exec(id, ['pwd'])).stdout.trim(), '/tmp');
    const groups = (await exec(id, ['id', '-G'])).stdout.trim().split(' ').sort();
    assert.deepEqual(groups, ['1000', '2000', '3000']);
  });

  test('a root container: the same, and the exit code and both streams come back apart', async () => {
    const id = await start('root', {});
    for (const [field, [self, init]] of Object.entries(await compareWithInit(id))) assert.equal(self, init, `${field} of the exec'd process`);
    const r = await exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual(r, { stdout: 'out\n', stderr: 'err\n', exitCode: 7 });
  });

  test('a command that is not there fails as runc exec fails: exit code 255 and the reason on stderr', async () => {
    const id = await start('missing', {});
    const r = await exec(id, ['no-such-command']);
    assert.equal(r.exitCode, 255);
    assert.match(r.stderr, /no-such-command.*not found/);
  });

  test('/proc/self/exe of the helper is its sealed copy: re-executing it inside the container runs nothing of the host and changes nothing on it', async () => {
    const hostFile = join(NATIVE_DIR, 'build', 'Release', EXEC_HELPER_NAME);
    const digest = (): string => createHash('sha256').update(readFileSync(hostFile)).digest('hex');
    const before = digest();
    const id = await start('reexec', {});
    const r = await exec(id, ['/proc/self/exe']);
    assert.equal(r.exitCode, 255, 'the copy ran without a request and refused');
    assert.match(r.stderr, /berth-exec: read request/);
    assert.equal(digest(), before, 'the helper on the host is unchanged');
  });

  test('under stats calls running in a loop, every ExecSync (berth-exec and runc exec) answers with its complete output and its own exit code, and leaves no file in the bundle', async () => {
    const direct = await start('loaded', {});
    const filtered = await start('loaded-filtered', { seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } });
    let loading = true;
    const statsLoop = (async () => {
      let rounds = 0;
      while (loading) {
        await Promise.all([
          berthd.client.call('ListContainerStats', { filter: null } as never),
          berthd.client.call('ListPodSandboxStats', { filter: null } as never),
          berthd.client.call('ImageFsInfo', {} as never),
        ]);
        rounds++;
      }
      return rounds;
    })();
    // ~20 KB of numbered lines each, a line on stderr, and an exit code of its own.
    const script = (n: number): string => `i=0; while [ $i -lt 1500 ]; do echo "exec-${n}-line-$i"; i=$((i+1)); done; echo "err-${n}" >&2; exit ${n}`;
    const expected = (n: number): string => Array.from({ length: 1500 }, (_, i) => `exec-${n}-line-${i}\n`).join('');
    try {
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, n) => exec(n % 3 === 0 ? filtered : direct, ['sh', '-c', script(n + 1)]).then((r) => ({ n: n + 1, r }))),
      );
      for (const { n, r } of results) {
        assert.equal(r.exitCode, n, `exec ${n}'s exit code`);
        assert.equal(r.stderr, `err-${n}\n`, `exec ${n}'s stderr`);
        assert.ok(r.stdout === expected(n), `exec ${n}'s stdout is complete (${r.stdout.length} of ${expected(n).length} bytes)`);
      }
    } finally {
      loading = false;
    }
    assert.ok((await statsLoop) > 0, 'stats calls ran meanwhile');
    for (const id of [direct, filtered]) {
      const { status } = await berthd.client.call('ContainerStatus', { container_id: id, verbose: false } as never);
      assert.equal(status?.state, 'CONTAINER_RUNNING');
      const bundle = join(berthd.root, 'containers', id);
      assert.deepEqual(readdirSync(bundle).filter((name) => name.startsWith('exec-')), [], `no exec file left in ${id}'s bundle`);
    }
  });

  test('a timed-out command that let go of its output is killed by the pid berth-exec reported', async () => {
    const id = await start('timeout', {});
    const before = helperRuns();
    await assert.rejects(
      berthd.client.call('ExecSync', { container_id: id, cmd: ['sh', '-c', 'exec sleep 602 >/dev/null 2>&1'], timeout: '1' } as never),
      (e: unknown) => /timed out after 1 s/.test(String(e)),
    );
    assert.ok(helperRuns() > before, 'berth-exec ran it');
    assert.doesNotMatch((await exec(id, ['ps', '-o', 'args'])).stdout, /sleep 602/);
  });

  test('a container with a seccomp filter keeps it in ExecSync (runc runs that exec)', async () => {
    const id = await start('filtered', { seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } });
    const before = helperRuns();
    const [self, init] = (await compareWithInit(id)).Seccomp;
    assert.equal(init, '2', 'the init runs filtered');
    assert.equal(self, '2', 'the exec runs filtered');
    assert.equal(helperRuns(), before, 'berth-exec left it to runc');
  });
});
