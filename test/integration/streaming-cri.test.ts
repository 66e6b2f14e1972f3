// Exec, attach and port-forward through a real berthd: real runc containers in
// a pod with its own network namespace on a CNI bridge of this test's own,
// driven by the project's SPDY and WebSocket clients.
import { testNetwork } from '../support/test-network';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { collect, spdyConnect, spdyForwardPort, spdyRemoteCommand, spdyRunCommand } from '../support/spdy-client';
import { wsChannelSession } from '../support/websocket-client';
import { podConfig, startSandboxBerthd, type SandboxBerthd, startContainerInPod } from './sandbox-fixture';

const NET = testNetwork({ name: 'bt-strm-net', bridge: 'bt-strm0', subnet: '10.90.0.0/16' });
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;

async function httpGetOver(socket: Duplex, path: string): Promise<string> {
  socket.write(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`);
  const body = collect(socket);
  socket.end();
  return (await body).toString();
}

describe('streaming through berthd', () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let image = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  let sleeper = '';

  const call = <M extends Parameters<SandboxBerthd['berthd']['client']['call']>[0]>(method: M, req: unknown) =>
    s.berthd.client.call(method, req as never);

  const run = (name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> =>
    startContainerInPod(s.berthd, { podId, sandboxConfig, image, name, command, extra: { linux: { resources: {}, security_context: {} }, ...extra } });

  const execUrl = async (cmd: string[], opts: Record<string, boolean> = {}): Promise<string> =>
    (await call('Exec', { container_id: sleeper, cmd, stdin: false, stdout: true, stderr: true, tty: false, ...opts })).url;

  before(async () => {
    registry = await startRegistry();
    image = (
      await pushBusyboxImage(registry, 'test/streaming:v1', {
        extraLayers: [
          [
            { path: 'bin/stty', type: 'symlink', linkname: 'busybox' },
            { path: 'bin/httpd', type: 'symlink', linkname: 'busybox' },
            { path: 'www/', type: 'dir' },
            { path: 'www/index.html', type: 'file', content: 'served from the pod\n' },
          ],
        ],
      })
    ).reference;
    s = await startSandboxBerthd(NET);
    await call('PullImage', { image: { image } });
    sandboxConfig = podConfig('strmpod', { log_directory: `${s.berthd.dir}/podlogs` } as never);
    podId = (await call('RunPodSandbox', { config: sandboxConfig })).pod_sandbox_id;
    sleeper = await run('sleeper', ['sh', '-c', 'exec sleep 600'], { working_dir: '/tmp' });
  });

  after(async () => {
    await s?.cleanup();
    await registry?.stop();
  });

  test('exec: stdin is echoed back, status Success', async () => {
    const out = await spdyRunCommand(await execUrl(['cat'], { stdin: true }), { input: 'hello container\n' });
    assert.equal(out.stdout, 'hello container\n');
    assert.deepEqual(JSON.parse(out.error), { metadata: {}, status: 'Success' });
  });

  test('exec: stdout and stderr separate, the container working dir applies', async () => {
    const out = await spdyRunCommand(await execUrl(['sh', '-c', 'pwd; echo oops >&2']), {});
    assert.equal(out.stdout, '/tmp\n');
    assert.equal(out.stderr, 'oops\n');
  });

  test('exec: a non-zero exit code comes back as NonZeroExitCode', async () => {
    const out = await spdyRunCommand(await execUrl(['sh', '-c', 'exit 3']), {});
    const status = JSON.parse(out.error);
    assert.equal(status.reason, 'NonZeroExitCode');
    assert.deepEqual(status.details.causes, [{ reason: 'ExitCode', message: '3' }]);
  });

  test('exec with a tty: stty sees the size the client sent, and the resize after it', async () => {
    const url = await execUrl(['sh'], { stdin: true, stdout: true, stderr: false, tty: true });
    const sess = await spdyRemoteCommand(url, { stdin: true, stdout: true, tty: true });
    assert.ok(sess.resize && sess.stdin && sess.stdout);
    const seen: Buffer[] = [];
    sess.stdout.on('data', (d: Buffer) => seen.push(d));
    const waitFor = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 400 && !re.test(Buffer.concat(seen).toString()); i++) await new Promise((r) => setTimeout(r, 25));
      assert.match(Buffer.concat(seen).toString(), re);
    };
    sess.resize.write(JSON.stringify({ Width: 123, Height: 45 }));
    sess.stdin.write('stty size\n');
    await waitFor(/45 123/);
    sess.resize.write(JSON.stringify({ Width: 90, Height: 30 }));
    sess.stdin.write('stty size; exit 0\n');
    await waitFor(/30 90/);
    const out = await sess.done;
    assert.deepEqual(JSON.parse(out.error), { metadata: {}, status: 'Success' });
  });

  test("exec with a tty: a command that reads its terminal at once sees the client's size", async () => {
    const url = await execUrl(['stty', 'size'], { stdin: false, stdout: true, stderr: false, tty: true });
    const sess = await spdyRemoteCommand(url, { stdout: true, tty: true });
    assert.ok(sess.resize);
    sess.resize.write(JSON.stringify({ Width: 77, Height: 33 }));
    const out = await sess.done;
    assert.deepEqual(JSON.parse(out.error), { metadata: {}, status: 'Success' });
    assert.equal(out.stdout.trim(), '33 77');
  });

  test('exec over WebSocket v5: close signal ends stdin, exit code in the status', async () => {
    const ws = await wsChannelSession(await execUrl(['sh', '-c', 'cat; exit 2'], { stdin: true }), ['v5.channel.k8s.io']);
    assert.equal(ws.protocol, 'v5.channel.k8s.io');
    await ws.send(0, 'over websocket\n');
    await ws.ws.send(Buffer.from([255, 0]));
    const closed = await ws.closed;
    assert.equal(closed.text(1), 'over websocket\n');
    assert.equal(JSON.parse(closed.text(3)).details.causes[0].message, '2');
  });

  test('ten execs at once', async () => {
    const urls = await Promise.all(Array.from({ length: 10 }, () => execUrl(['cat'], { stdin: true })));
    const results = await Promise.all(urls.map((url, i) => spdyRunCommand(url, { input: `exec number ${i}\n` })));
    results.forEach((r, i) => assert.equal(r.stdout, `exec number ${i}\n`));
  });

  test('a client that disconnects ends its exec process', async () => {
    const sess = await spdyRemoteCommand(await execUrl(['sh', '-c', 'echo $$; exec sleep 1000']), { stdout: true, stderr: true });
    const pid = await new Promise<string>((resolve) => sess.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
    assert.match(pid, /^\d+$/);
    const alive = async (): Promise<boolean> =>
      (await call('ExecSync', { container_id: sleeper, cmd: ['sh', '-c', `kill -0 ${pid} 2>/dev/null && echo yes || echo no`], timeout: '10' })).stdout.toString().trim() === 'yes';
    assert.equal(await alive(), true);
    sess.session.destroy();
    let still = true;
    for (let i = 0; i < 100 && still; i++) {
      still = await alive();
      if (still) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(still, false);
  });

  test('exec and ExecSync run the same process: user with its groups, env, cwd, capabilities', async () => {
    const id = await run('shaped', ['sh', '-c', 'exec sleep 600'], {
      working_dir: '/tmp',
      envs: [{ key: 'SHAPE', value: Buffer.from('one') }],
      linux: {
        resources: {},
        security_context: {
          run_as_user: { value: '1000' },
          run_as_group: { value: '1000' },
          supplemental_groups: ['3000'],
          capabilities: { add_capabilities: [], drop_capabilities: ['ALL'] },
          no_new_privs: true,
        },
      },
    });
    const script = 'id; pwd; echo "SHAPE=$SHAPE"; grep -E "^(CapBnd|CapEff|NoNewPrivs)" /proc/self/status';
    const { url } = await call('Exec', { container_id: id, cmd: ['sh', '-c', script], stdin: false, stdout: true, stderr: true, tty: false });
    const streamed = await spdyRunCommand(url, {});
    const synced = await call('ExecSync', { container_id: id, cmd: ['sh', '-c', script], timeout: '10' });
    assert.equal(synced.exit_code, 0, synced.stderr.toString());
    assert.match(streamed.stdout, /^uid=1000\b.* gid=1000\b.* groups=.*\b3000\b/m);
    assert.match(streamed.stdout, /^\/tmp$/m);
    assert.match(streamed.stdout, /^SHAPE=one$/m);
    assert.match(streamed.stdout, /^CapEff:\s+0+$/m);
    assert.match(streamed.stdout, /^NoNewPrivs:\s+1$/m);
    assert.equal(synced.stdout.toString(), streamed.stdout);
  });

  test('a URL works once', async () => {
    const url = await execUrl(['true']);
    await spdyRunCommand(url, {});
    const again = await spdyConnect(url, ['v4.channel.k8s.io']);
    assert.equal(again.ok, false);
    if (!again.ok) assert.equal(again.status, 404);
  });

  test('attach joins a running container: stdin in, output out', async () => {
    const id = await run('reader', ['sh', '-c', 'while read line; do echo got:$line; done'], { stdin: true, stdin_once: false });
    const { url } = await call('Attach', { container_id: id, stdin: true, stdout: true, stderr: true, tty: false });
    const sess = await spdyRemoteCommand(url, { stdin: true, stdout: true, stderr: true });
    const seen: Buffer[] = [];
    sess.stdout!.on('data', (d: Buffer) => seen.push(d));
    sess.stdin!.write('ping\n');
    for (let i = 0; i < 400 && !Buffer.concat(seen).toString().includes('got:ping'); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(Buffer.concat(seen).toString(), /got:ping/);
    // Detaching leaves the container running.
    sess.session.close();
    const st = await call('ContainerStatus', { container_id: id });
    assert.equal(st.status?.state, 'CONTAINER_RUNNING');
  });

  test('port-forward reaches an HTTP server in the pod over SPDY and WebSocket', async () => {
    await run('web', ['httpd', '-f', '-p', '8080', '-h', '/www']);
    let body = '';
    for (let attempt = 0; attempt < 40 && !body.includes('served from the pod'); attempt++) {
      const { url } = await call('PortForward', { pod_sandbox_id: podId, port: [8080] });
      const conn = await spdyConnect(url, ['portforward.k8s.io']);
      assert.ok(conn.ok);
      if (!conn.ok) return;
      const pair = spdyForwardPort(conn.session, 8080);
      const errors = collect(pair.error);
      body = await httpGetOver(pair.data, '/index.html');
      await errors;
      conn.session.close();
      if (!body.includes('served from the pod')) await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(body, /200 OK[\s\S]*served from the pod/);

    const { url } = await call('PortForward', { pod_sandbox_id: podId, port: [8080] });
    const ws = await wsChannelSession(`${url}?port=8080`, ['v4.channel.k8s.io']);
    await ws.send(0, 'GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n');
    await ws.closed;
    assert.match(Buffer.concat((ws.channels.get(0) ?? []).slice(1)).toString(), /served from the pod/);
  });

  test('requests are validated and ids looked up', async () => {
    await assert.rejects(call('Exec', { container_id: sleeper, cmd: [], stdout: true }), (e) => grpcCode(e) === INVALID_ARGUMENT);
    await assert.rejects(call('Exec', { container_id: sleeper, cmd: ['sh'], tty: true, stderr: true, stdout: true }), (e) => grpcCode(e) === INVALID_ARGUMENT);
    await assert.rejects(call('Exec', { container_id: 'nope', cmd: ['sh'], stdout: true }), (e) => grpcCode(e) === NOT_FOUND);
    await assert.rejects(call('PortForward', { pod_sandbox_id: 'nope', port: [80] }), (e) => grpcCode(e) === NOT_FOUND);
    const { container_id } = await call('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name: 'created', attempt: 0 }, image: { image }, command: ['true'], log_path: 'created.log', linux: { resources: {}, security_context: {} } },
      sandbox_config: sandboxConfig,
    });
    await assert.rejects(call('Exec', { container_id, cmd: ['sh'], stdout: true }), (e) => grpcCode(e) === FAILED_PRECONDITION);
    // Short ids work, as users type them.
    const { url } = await call('Exec', { container_id: sleeper.slice(0, 12), cmd: ['true'], stdout: true });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//);
  });
});
