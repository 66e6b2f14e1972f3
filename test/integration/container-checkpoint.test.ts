// Checkpoint and restore (KEP-2008) through a real berthd, runc 1.1, conmon,
// criu and the CRI: a counting shell is checkpointed while it runs (it goes on
// running), the archive has the layout checkpointctl and CRI-O use, and a
// CreateContainer whose image is that archive, in another pod, resumes the
// count where the checkpoint left it, with the checkpointed container's file
// changes and deletions. The criu is $BERTH_TEST_CRIU (e.g. a criu 4.x built
// into /opt/criu) or the one on PATH; the test skips with criu's own words
// where it cannot checkpoint on this host. Where criu does not work,
// CheckpointContainer fails with criu's reason, which is tested on any host.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BERTHD_ENTRY } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { buildImage, layerFromTar, pushBusyboxImage, pushImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { testNetwork } from '../support/test-network';
import { podConfig, startContainerInPod, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-ckpt', bridge: 'bt-ckpt0', subnet: '10.86.41.0/24' });
const NET_NO_CRIU = testNetwork({ name: 'bt-nocriu', bridge: 'bt-nocriu0', subnet: '10.86.42.0/24' });
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;
const UNIMPLEMENTED = 12;
const CRIU = process.env.BERTH_TEST_CRIU || 'criu';
/** Debian's criu: where it fails `criu check` here, it is the criu that "does not work". */
const DEBIAN_CRIU = '/usr/sbin/criu';
// /count is replaced by a rename: a checkpoint between a truncation and its write would find it empty.
const COUNTER = 'echo made > /made-here; rm /data/doomed; i=0; while true; do i=$((i+1)); echo $i > /count.new; mv /count.new /count; echo $i; sleep 0.1; done';

interface CriuSupport {
  supported: boolean;
  reason?: string;
  version?: string;
}

type Call = <M extends Parameters<SandboxBerthd['berthd']['client']['call']>[0]>(method: M, req: unknown) => ReturnType<SandboxBerthd['berthd']['client']['call']>;

function caller(s: SandboxBerthd): Call {
  return ((method, req) => s.berthd.client.call(method, req as never)) as Call;
}

async function criuOf(call: Call): Promise<CriuSupport> {
  const info = (await call('Status', { verbose: true })) as { info: Record<string, string> };
  return JSON.parse(info.info.checkpoint) as CriuSupport;
}

/** berthd doctor's finding on criu, with berthd's config. */
function doctorOnCriu(configPath: string): { status: string; found: string } {
  const out = spawnSync(process.execPath, [BERTHD_ENTRY, 'doctor', '--json', '--config', configPath], { encoding: 'utf8' });
  const report = JSON.parse(out.stdout) as { results: { id: string; status: string; found: string }[] };
  return report.results.find((r) => r.id === 'binary.criu')!;
}

function logValues(path: string): number[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line) => Number(line.split(' ').slice(3).join(' ')));
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never: ${what}`);
}

/** The restored counter's first values: on from the checkpoint's count (frozen before /count had the new value, or after: that value or one more). */
async function countsOnFrom(log: string, countAtCheckpoint: number): Promise<void> {
  const counted = await until('the restored counter printed three values', () => {
    try {
      const values = logValues(log);
      return values.length >= 3 ? values : undefined;
    } catch {
      return undefined;
    }
  });
  assert.ok(counted[0] === countAtCheckpoint || counted[0] === countAtCheckpoint + 1, `restored counter went on from ${counted[0]}, the checkpoint's file said ${countAtCheckpoint}`);
  assert.deepEqual(counted.slice(0, 3), [counted[0], counted[0] + 1, counted[0] + 2]);
}

function tarNames(archive: string, member?: string): string[] {
  const listing = member ? execFileSync('sh', ['-c', 'tar -xOf "$1" "$2" | tar -t', 'sh', archive, member], { encoding: 'utf8' }) : execFileSync('tar', ['-tf', archive], { encoding: 'utf8' });
  return listing.split('\n').filter(Boolean);
}

function tarMember(archive: string, member: string, inner?: string): string {
  return inner
    ? execFileSync('sh', ['-c', 'tar -xOf "$1" "$2" | tar -xOf - "$3"', 'sh', archive, member, inner], { encoding: 'utf8' })
    : execFileSync('tar', ['-xOf', archive, member], { encoding: 'utf8' });
}

describe('checkpoint and restore over CRI', () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let call: Call;
  let image = '';
  let criu: CriuSupport;
  /** The counter's archive and the count its rootfs diff holds, for the restores that follow. */
  let checkpointed: { archive: string; count: number } | undefined;
  const scratch = mkdtempSync('/tmp/berth-ckpt-');

  async function pod(name: string) {
    const config = podConfig(name, { log_directory: join(scratch, `${name}-logs`) });
    const { pod_sandbox_id } = (await call('RunPodSandbox', { config })) as { pod_sandbox_id: string };
    return { podId: pod_sandbox_id, sandboxConfig: config };
  }

  before(async () => {
    registry = await startRegistry();
    image = (await pushBusyboxImage(registry, 'test/ckpt:v1', {
      extraLayers: [[{ path: 'data/', type: 'dir' }, { path: 'data/doomed', type: 'file', content: 'deleted by the container\n' }, { path: 'data/keep', type: 'file', content: 'kept\n' }]],
    })).reference;
    s = await startSandboxBerthd(NET, { tomlTail: `[oci]\ncriu = ${JSON.stringify(CRIU)}` });
    call = caller(s);
    await call('PullImage', { image: { image } });
    criu = await criuOf(call);
  });

  after(async () => {
    try {
      const { containers } = (await call('ListContainers', {})) as { containers: { id: string }[] };
      for (const c of containers) await call('RemoveContainer', { container_id: c.id });
    } finally {
      await s?.cleanup();
      await registry?.stop();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('Status and berthd doctor say whether the configured criu can checkpoint here', () => {
    const finding = doctorOnCriu(s.berthd.configPath);
    if (criu.supported) {
      assert.equal(finding.status, 'ok');
      assert.match(finding.found, new RegExp(`criu ${criu.version}.* criu check passes`));
    } else {
      assert.equal(finding.status, 'warn');
      assert.ok(finding.found.includes(criu.reason!.split('\n')[0]), `${finding.found} says ${criu.reason}`);
    }
  });

  test('a running counter is checkpointed (it keeps running) and restored in another pod, counting on from where it was, with its file changes', async (t) => {
    if (!criu.supported) return t.skip(`criu cannot checkpoint on this host: ${criu.reason}`);
    const a = await pod('ckpt-source');
    const id = await startContainerInPod(s.berthd, { podId: a.podId, sandboxConfig: a.sandboxConfig, image, name: 'counter', command: ['sh', '-c', COUNTER], extra: { linux: { resources: {}, security_context: {} } } });
    const sourceLog = join(scratch, 'ckpt-source-logs', 'counter.log');
    await until('the counter reached 5', () => (logValues(sourceLog).at(-1)! >= 5 ? true : undefined));

    // A link at the location is replaced by the archive, never written through.
    const elsewhere = join(scratch, 'not-the-archive');
    writeFileSync(elsewhere, 'untouched\n');
    const archive = join(scratch, 'counter.tar');
    symlinkSync(elsewhere, archive);
    await call('CheckpointContainer', { container_id: id, location: archive, timeout: '120' });
    assert.ok(lstatSync(archive).isFile(), 'the archive replaced the link');
    assert.equal(lstatSync(archive).mode & 0o777, 0o600, 'the archive holds memory: private to root');
    assert.equal(readFileSync(elsewhere, 'utf8'), 'untouched\n');

    const status = (await call('ContainerStatus', { container_id: id })) as { status: { state: string } };
    assert.equal(status.status.state, 'CONTAINER_RUNNING', 'the checkpointed container keeps running');
    const atCheckpoint = logValues(sourceLog).at(-1)!;
    await until('the source counts on after its checkpoint', () => (logValues(sourceLog).at(-1)! > atCheckpoint + 2 ? true : undefined));

    const names = tarNames(archive);
    for (const name of ['config.dump', 'spec.dump', 'rootfs-diff.tar', 'deleted.files', 'dump.log', 'checkpoint/', 'checkpoint/inventory.img']) {
      assert.ok(names.includes(name), `${name} in ${names.join(' ')}`);
    }
    assert.ok(names.some((n) => /^checkpoint\/pages-\d+\.img$/.test(n)), 'criu memory pages');
    const config = JSON.parse(tarMember(archive, 'config.dump')) as { id: string; rootfsImageRef: string; checkpointedTime: string };
    assert.equal(config.id, id);
    assert.match(config.rootfsImageRef, /^sha256:[0-9a-f]{64}$/);
    assert.ok(Date.parse(config.checkpointedTime) > 0);
    const spec = JSON.parse(tarMember(archive, 'spec.dump')) as { process: { args: string[] } };
    assert.deepEqual(spec.process.args, ['sh', '-c', COUNTER]);
    assert.deepEqual(JSON.parse(tarMember(archive, 'deleted.files')), ['/data/doomed']);
    const diff = tarNames(archive, 'rootfs-diff.tar');
    assert.ok(diff.includes('made-here') && diff.includes('count'), diff.join(' '));
    assert.ok(!diff.includes('etc/hosts') && !diff.includes('etc/resolv.conf'), `mount points are the pod's, not the container's changes: ${diff.join(' ')}`);
    const countAtCheckpoint = Number(tarMember(archive, 'rootfs-diff.tar', 'count'));
    assert.ok(countAtCheckpoint >= 5, `count ${countAtCheckpoint}`);
    checkpointed = { archive, count: countAtCheckpoint };

    // The restore: a new pod, a container whose image is the archive, no command of its own.
    const b = await pod('ckpt-target');
    const { container_id: restored } = (await call('CreateContainer', {
      pod_sandbox_id: b.podId,
      config: { metadata: { name: 'counter-restored', attempt: 0 }, image: { image: archive }, log_path: 'restored.log', linux: { resources: {}, security_context: {} } },
      sandbox_config: b.sandboxConfig,
    })) as { container_id: string };
    const created = (await call('ContainerStatus', { container_id: restored })) as { status: { state: string; image: { image: string } } };
    assert.equal(created.status.state, 'CONTAINER_CREATED');
    await call('StartContainer', { container_id: restored });
    const running = (await call('ContainerStatus', { container_id: restored, verbose: true })) as { status: { state: string }; info: { info: string } };
    assert.equal(running.status.state, 'CONTAINER_RUNNING');

    await countsOnFrom(join(scratch, 'ckpt-target-logs', 'restored.log'), countAtCheckpoint);

    const inside = (await call('ExecSync', { container_id: restored, cmd: ['sh', '-c', 'cat /made-here /data/keep; test -e /data/doomed && echo doomed-is-back'], timeout: '20' })) as { stdout: Buffer; exit_code: number };
    assert.equal(inside.stdout.toString(), 'made\nkept\n', 'the checkpoint\'s added file is there, its deleted one is not, the image\'s others are');
    const restoredPid = (JSON.parse(running.info.info) as { pid: number }).pid;
    for (const type of ['net', 'ipc', 'uts']) {
      const inode = Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${restoredPid}/ns/${type}`))![1]);
      assert.equal(inode, statSync(join(s.nsDir, type, b.podId)).ino, `the restored process is in the new pod's ${type} namespace`);
    }

    await call('RemoveContainer', { container_id: restored });
    await call('RemoveContainer', { container_id: id });
    for (const p of [a.podId, b.podId]) {
      await call('StopPodSandbox', { pod_sandbox_id: p });
      await call('RemovePodSandbox', { pod_sandbox_id: p });
    }
  });

  test('a checkpoint image (an OCI image of the archive, annotated as CRI-O reads it) restores the same way', async (t) => {
    if (!checkpointed) return t.skip('no checkpoint was made (criu cannot checkpoint here)');
    const layer = layerFromTar(readFileSync(checkpointed.archive), 'gzip');
    const pushed = await pushImage(registry, 'test/counter-checkpoint:v1', buildImage({ layers: [layer], annotations: { 'org.criu.checkpoint.container.name': 'counter' } }));
    await call('PullImage', { image: { image: pushed.reference } });
    const c = await pod('ckpt-from-image');
    const { container_id: restored } = (await call('CreateContainer', {
      pod_sandbox_id: c.podId,
      config: { metadata: { name: 'counter-from-image', attempt: 0 }, image: { image: pushed.reference }, log_path: 'restored.log', linux: { resources: {}, security_context: {} } },
      sandbox_config: c.sandboxConfig,
    })) as { container_id: string };
    await call('StartContainer', { container_id: restored });
    await countsOnFrom(join(scratch, 'ckpt-from-image-logs', 'restored.log'), checkpointed.count);
    const inside = (await call('ExecSync', { container_id: restored, cmd: ['cat', '/made-here'], timeout: '20' })) as { stdout: Buffer };
    assert.equal(inside.stdout.toString(), 'made\n');
    await call('RemoveContainer', { container_id: restored });
  });

  test('CheckpointContainer and a restore refuse bad requests with the field named', async () => {
    const a = await pod('ckpt-requests');
    const id = await startContainerInPod(s.berthd, { podId: a.podId, sandboxConfig: a.sandboxConfig, image, name: 'sleeper', command: ['sleep', '600'], extra: { linux: { resources: {}, security_context: {} } } });
    const refused = async (req: unknown, code: number, pattern: RegExp, method = 'CheckpointContainer' as const) => {
      const err = await call(method, req).then(() => assert.fail('accepted'), (e: Error) => e);
      assert.equal(grpcCode(err), code, err.message);
      assert.match(err.message, pattern);
    };
    await refused({ container_id: id, location: 'relative.tar' }, INVALID_ARGUMENT, /location: "relative.tar" must be an absolute path/);
    await refused({ container_id: id, location: join(scratch, 'no-such-dir', 'x.tar') }, INVALID_ARGUMENT, /location: directory .*no-such-dir does not exist/);
    await refused({ container_id: id, location: scratch }, INVALID_ARGUMENT, /location: .* is a directory/);
    await refused({ container_id: 'f'.repeat(64), location: join(scratch, 'x.tar') }, NOT_FOUND, /container/);
    if (criu.supported) {
      const create = (archive: string) => call('CreateContainer', {
        pod_sandbox_id: a.podId, config: { metadata: { name: `r-${archive.length}`, attempt: 0 }, image: { image: archive }, linux: {} }, sandbox_config: a.sandboxConfig,
      });
      let err = await create(join(scratch, 'missing.tar')).then(() => assert.fail('accepted'), (e: Error) => e);
      assert.equal(grpcCode(err), NOT_FOUND);
      assert.match(err.message, /config\.image\.image: checkpoint archive .*missing\.tar does not exist/);
      const notCheckpoint = join(scratch, 'plain.tar');
      mkdirSync(join(scratch, 'plain'));
      writeFileSync(join(scratch, 'plain', 'config.dump'), '{}');
      execFileSync('tar', ['-cf', notCheckpoint, '-C', join(scratch, 'plain'), '.']);
      err = await create(notCheckpoint).then(() => assert.fail('accepted'), (e: Error) => e);
      assert.equal(grpcCode(err), INVALID_ARGUMENT);
      assert.match(err.message, /holds no criu images .*not a container checkpoint/);
    }
    await call('RemoveContainer', { container_id: id });
  });

  test("a checkpoint cut short by berthd's end is undone at the next start: the container thawed, the partial archive removed", async () => {
    const a = await pod('ckpt-interrupted');
    const id = await startContainerInPod(s.berthd, { podId: a.podId, sandboxConfig: a.sandboxConfig, image, name: 'frozen', command: ['sleep', '600'], extra: { linux: { resources: {}, security_context: {} } } });
    const info = JSON.parse(((await call('ContainerStatus', { container_id: id, verbose: true })) as { info: { info: string } }).info.info) as { bundle: string; runtimeRoot: string };
    const runc = (...args: string[]) => execFileSync('runc', ['--root', info.runtimeRoot, ...args], { encoding: 'utf8' });
    // What a checkpoint leaves while it runs: the container frozen, its work dir, a partial archive beside the location.
    runc('pause', id);
    const partial = join(scratch, '.interrupted.tar.berth-0');
    writeFileSync(partial, 'half');
    mkdirSync(join(info.bundle, 'checkpoint-work', 'images'), { recursive: true });
    writeFileSync(join(info.bundle, 'checkpoint-work', 'archive-in-progress'), partial);
    await s.berthd.stop('SIGKILL');
    await s.berthd.start();
    assert.equal((JSON.parse(runc('state', id)) as { status: string }).status, 'running');
    assert.ok(!existsSync(partial), 'partial archive removed');
    assert.ok(!existsSync(join(info.bundle, 'checkpoint-work')), 'work dir removed');
    await call('RemoveContainer', { container_id: id });
  });

  test("where criu does not work, CheckpointContainer and restores fail saying why in criu's words; pod checkpoints are UNIMPLEMENTED saying why", async () => {
    const debian = spawnSync(DEBIAN_CRIU, ['check'], { encoding: 'utf8' });
    const debianFails = !debian.error && debian.status !== 0;
    // Debian's criu where it cannot work on this kernel, else a criu that is not there at all.
    const broken = debianFails ? DEBIAN_CRIU : join(scratch, 'no-such-criu');
    const other = await startSandboxBerthd(NET_NO_CRIU, { tomlTail: `[oci]\ncriu = ${JSON.stringify(broken)}` });
    const otherCall = caller(other);
    try {
      const support = await criuOf(otherCall);
      assert.equal(support.supported, false);
      const finding = doctorOnCriu(other.berthd.configPath);
      assert.equal(finding.status, 'warn');
      assert.match(finding.found, /CheckpointContainer and restores are unavailable/);
      const config = podConfig('nocriu', { log_directory: join(scratch, 'nocriu-logs') });
      const { pod_sandbox_id: podId } = (await otherCall('RunPodSandbox', { config })) as { pod_sandbox_id: string };
      await otherCall('PullImage', { image: { image } });
      const id = await startContainerInPod(other.berthd, { podId, sandboxConfig: config, image, name: 'c', command: ['sleep', '600'], extra: { linux: { resources: {}, security_context: {} } } });
      const err = await otherCall('CheckpointContainer', { container_id: id, location: join(scratch, 'nocriu.tar') }).then(() => assert.fail('checkpointed'), (e: Error) => e);
      assert.equal(grpcCode(err), FAILED_PRECONDITION);
      assert.match(err.message, /CheckpointContainer: checkpointing is not available on this host: /);
      if (debianFails) {
        const firstError = `${debian.stdout}${debian.stderr}`.split('\n').find((l) => /Error/.test(l))!.trim();
        assert.ok(err.message.includes(firstError), `${err.message} names criu's error ${firstError}`);
      } else {
        assert.match(err.message, /is not installed or not executable/);
      }
      const restore = await otherCall('CreateContainer', {
        pod_sandbox_id: podId, config: { metadata: { name: 'restore', attempt: 0 }, image: { image: join(scratch, 'any.tar') }, linux: {} }, sandbox_config: config,
      }).then(() => assert.fail('created'), (e: Error) => e);
      assert.equal(grpcCode(restore), FAILED_PRECONDITION);
      assert.match(restore.message, /checkpointing is not available on this host/);
      for (const [method, request] of [['CheckpointPod', { pod_sandbox_id: podId, output_path: join(scratch, 'pod.tar') }], ['RestorePod', { checkpoint_path: join(scratch, 'pod.tar') }]] as const) {
        const pods = await otherCall(method, request).then(() => assert.fail('done'), (e: Error) => e);
        assert.equal(grpcCode(pods), UNIMPLEMENTED);
        assert.match(pods.message, new RegExp(`^12 UNIMPLEMENTED: ${method}: berth does not (checkpoint|restore) pods; checkpointing is not available on this host`));
      }
      await otherCall('RemoveContainer', { container_id: id });
    } finally {
      await other.cleanup();
    }
  });
});
