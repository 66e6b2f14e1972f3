// The streaming server end to end over real sockets, with host processes
// standing in for containers: the protocols are what is under test here.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { StreamingServer } from '../../shim/streaming/streaming-server';
import type { SessionIo, StreamingRuntime } from '../../runtime/exec/session-types';
import { collect, spdyConnect, spdyForwardPort, spdyRemoteCommand, spdyRunCommand } from '../support/spdy-client';
import { wsChannelSession, wsConnect } from '../support/websocket-client';
import { SpdySession } from '../../shim/streaming/spdy-session';
import { WebSocketTunnel } from '../../shim/streaming/websocket';

/** Runs commands as host processes with pipes; attach echoes stdin; ports are host ports. */
class HostProcessRuntime implements StreamingRuntime {
  async exec(_id: string, cmd: string[], io: SessionIo, signal: AbortSignal): Promise<number> {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: [io.stdin ? 'pipe' : 'ignore', io.stdout ? 'pipe' : 'ignore', io.stderr ? 'pipe' : 'ignore'] });
    const kill = (): void => void child.kill('SIGKILL');
    signal.addEventListener('abort', kill);
    if (io.stdin && child.stdin) {
      child.stdin.on('error', () => undefined);
      io.stdin.pipe(child.stdin);
    }
    if (io.stdout) child.stdout?.pipe(io.stdout, { end: false });
    if (io.stderr) child.stderr?.pipe(io.stderr, { end: false });
    const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? 137)));
    signal.removeEventListener('abort', kill);
    return code;
  }

  async attach(_id: string, io: SessionIo, signal: AbortSignal): Promise<void> {
    if (io.resizes) io.resizes.on('resize', (s) => io.stdout?.write(`size ${s.width}x${s.height}\n`));
    await new Promise<void>((resolve) => {
      io.stdin?.on('data', (d: Buffer) => io.stdout?.write(d));
      io.stdin?.once('end', () => resolve());
      signal.addEventListener('abort', () => resolve());
    });
  }

  async portForward(_pod: string, port: number): Promise<Duplex> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }
}

const log = pino({ level: 'silent' });
let server: StreamingServer;
let http: Server;
let httpPort: number;

function execUrl(cmd: string[], opts: Partial<{ stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }> = {}): string {
  return server.urlFor({ kind: 'exec', containerId: 'c1', cmd, stdin: false, stdout: true, stderr: true, tty: false, ...opts });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function httpGetOver(socket: Duplex, path: string): Promise<string> {
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  socket.end();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
  });
  return Buffer.concat(chunks).toString();
}

before(async () => {
  server = new StreamingServer({ address: '127.0.0.1', port: 0, tokenTtlSeconds: 60, log, runtime: new HostProcessRuntime() });
  await server.listen();
  http = createServer((req, res) => res.end(`hello from ${req.url}`));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  httpPort = (http.address() as AddressInfo).port;
});

after(async () => {
  await server.close();
  await new Promise((resolve) => http.close(resolve));
});

describe('remotecommand over SPDY', () => {
  test('stdin is echoed back on stdout and the v4 status says Success', async () => {
    const out = await spdyRunCommand(execUrl(['cat'], { stdin: true }), { input: 'hello berth\n' });
    assert.equal(out.protocol, 'v4.channel.k8s.io');
    assert.equal(out.stdout, 'hello berth\n');
    assert.deepEqual(JSON.parse(out.error), { metadata: {}, status: 'Success' });
  });

  test('stdout and stderr stay separate', async () => {
    const out = await spdyRunCommand(execUrl(['sh', '-c', 'echo out; echo err >&2']), {});
    assert.equal(out.stdout, 'out\n');
    assert.equal(out.stderr, 'err\n');
  });

  test('a non-zero exit is reported as NonZeroExitCode with the code', async () => {
    const out = await spdyRunCommand(execUrl(['sh', '-c', 'exit 7']), {});
    const status = JSON.parse(out.error);
    assert.equal(status.status, 'Failure');
    assert.equal(status.reason, 'NonZeroExitCode');
    assert.deepEqual(status.details.causes, [{ reason: 'ExitCode', message: '7' }]);
  });

  test('v2 clients get the failure as plain text and nothing on success', async () => {
    const failed = await spdyRunCommand(execUrl(['sh', '-c', 'exit 3']), { protocols: ['v2.channel.k8s.io'] });
    assert.equal(failed.protocol, 'v2.channel.k8s.io');
    assert.match(failed.error, /non-zero exit code.*exit code 3/);
    const ok = await spdyRunCommand(execUrl(['true']), { protocols: ['v2.channel.k8s.io'] });
    assert.equal(ok.error, '');
  });

  test('a client naming no protocol is served as channel.k8s.io', async () => {
    const out = await spdyRunCommand(execUrl(['echo', 'v1']), { protocols: [] });
    assert.equal(out.protocol, '');
    assert.equal(out.stdout, 'v1\n');
  });

  test('an unknown protocol is refused with 403 and the supported list', async () => {
    const res = await spdyConnect(execUrl(['true']), ['v9.channel.k8s.io']);
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.status, 403);
      assert.match(res.body, /unable to negotiate protocol/);
    }
  });

  test('large output arrives whole', async () => {
    const out = await spdyRunCommand(execUrl(['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" a']), {});
    assert.equal(out.stdout.length, 3_000_000);
  });

  test('a client that disconnects ends the process', async () => {
    const s = await spdyRemoteCommand(execUrl(['sh', '-c', 'echo $$; exec sleep 1000']), { stdout: true, stderr: true });
    const pid = await new Promise<number>((resolve) => s.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    assert.ok(processAlive(pid));
    s.session.destroy();
    for (let i = 0; i < 200 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(processAlive(pid), false);
  });

  test('ten execs at once each get their own output', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => spdyRunCommand(execUrl(['cat'], { stdin: true }), { input: `exec ${i}\n`.repeat(100) })),
    );
    results.forEach((r, i) => assert.equal(r.stdout, `exec ${i}\n`.repeat(100)));
  });

  test('resize events reach the session as sizes', async () => {
    const url = server.urlFor({ kind: 'attach', containerId: 'c1', stdin: true, stdout: true, stderr: false, tty: true });
    const s = await spdyRemoteCommand(url, { stdin: true, stdout: true, tty: true });
    assert.ok(s.resize);
    s.resize.write('{"Width":120,"Height":40}');
    const first = await new Promise<string>((resolve) => s.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
    assert.equal(first, 'size 120x40\n');
    s.stdin!.end();
    const out = await s.done;
    assert.deepEqual(JSON.parse(out.error), { metadata: {}, status: 'Success' });
  });
});

describe('tokens', () => {
  test('a used token is refused with 404', async () => {
    const url = execUrl(['true']);
    await spdyRunCommand(url, {});
    const again = await spdyConnect(url, ['v4.channel.k8s.io']);
    assert.equal(again.ok, false);
    if (!again.ok) assert.equal(again.status, 404);
  });

  test('an unknown token is refused with 404', async () => {
    const res = await wsConnect(`${server.baseUrl}/exec/AAAAAAAAAAAAAAAA`, ['v5.channel.k8s.io']);
    assert.equal(res.ok, false);
    if (!res.ok) assert.equal(res.status, 404);
  });

  test('an expired token is refused with 404', async () => {
    const short = new StreamingServer({ address: '127.0.0.1', port: 0, tokenTtlSeconds: 1, log, runtime: new HostProcessRuntime() });
    await short.listen();
    try {
      const url = short.urlFor({ kind: 'exec', containerId: 'c', cmd: ['true'], stdin: false, stdout: true, stderr: false, tty: false });
      await new Promise((r) => setTimeout(r, 1100));
      const res = await spdyConnect(url, ['v4.channel.k8s.io']);
      assert.equal(res.ok, false);
      if (!res.ok) assert.equal(res.status, 404);
    } finally {
      await short.close();
    }
  });
});

describe('remotecommand over WebSocket', () => {
  test('v5: stdin closed by the close signal, output and Success status', async () => {
    const s = await wsChannelSession(execUrl(['cat'], { stdin: true }), ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    assert.equal(s.protocol, 'v5.channel.k8s.io');
    await s.send(0, 'via websocket\n');
    await s.ws.send(Buffer.from([255, 0]));
    const closed = await s.closed;
    assert.equal(closed.code, 1000);
    assert.equal(closed.text(1), 'via websocket\n');
    assert.deepEqual(JSON.parse(closed.text(3)), { metadata: {}, status: 'Success' });
  });

  test('v4 base64: stderr separate, exit code in the status', async () => {
    const s = await wsChannelSession(execUrl(['sh', '-c', 'echo out; echo err >&2; exit 4']), ['v4.base64.channel.k8s.io']);
    assert.equal(s.protocol, 'v4.base64.channel.k8s.io');
    const closed = await s.closed;
    assert.equal(closed.text(1), 'out\n');
    assert.equal(closed.text(2), 'err\n');
    assert.equal(JSON.parse(closed.text(3)).details.causes[0].message, '4');
  });

  test('an unsupported subprotocol is refused with 400', async () => {
    const res = await wsConnect(execUrl(['true']), ['v9.channel.k8s.io']);
    assert.equal(res.ok, false);
    if (!res.ok) assert.equal(res.status, 400);
  });

  test('a client that disconnects ends the process', async () => {
    const s = await wsChannelSession(execUrl(['sh', '-c', 'echo $$; exec sleep 1000']), ['v5.channel.k8s.io']);
    for (let i = 0; i < 200 && s.channels.get(1)?.every((b) => b.length === 0) !== false; i++) await new Promise((r) => setTimeout(r, 25));
    const pid = Number(Buffer.concat(s.channels.get(1) ?? []).toString().trim());
    assert.ok(pid > 0 && processAlive(pid));
    s.ws.destroy();
    for (let i = 0; i < 200 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(processAlive(pid), false);
  });
});

describe('port-forward', () => {
  test('SPDY: two connections to a port at once, each answered', async () => {
    const url = server.urlFor({ kind: 'portforward', podSandboxId: 'p1', ports: [] });
    const conn = await spdyConnect(url, ['portforward.k8s.io']);
    assert.ok(conn.ok);
    if (!conn.ok) return;
    const a = spdyForwardPort(conn.session, httpPort);
    const b = spdyForwardPort(conn.session, httpPort);
    const [ra, rb] = await Promise.all([httpGetOver(a.data, '/a'), httpGetOver(b.data, '/b')]);
    assert.match(ra, /hello from \/a$/);
    assert.match(rb, /hello from \/b$/);
    conn.session.close();
  });

  test('SPDY: a closed port is reported on the error stream', async () => {
    const url = server.urlFor({ kind: 'portforward', podSandboxId: 'p1', ports: [] });
    const conn = await spdyConnect(url, ['portforward.k8s.io']);
    assert.ok(conn.ok);
    if (!conn.ok) return;
    const pair = spdyForwardPort(conn.session, 1);
    pair.data.end();
    const error = (await collect(pair.error)).toString();
    assert.match(error, /error forwarding port 1/);
    conn.session.close();
  });

  test('SPDY tunnelled in WebSocket binary messages (client-go --transport websocket): the ports come in SPDY headers', async () => {
    const url = server.urlFor({ kind: 'portforward', podSandboxId: 'p1', ports: [] });
    // No ?port= here: client-go's tunnelling dialer sends none.
    const conn = await wsConnect(url, ['SPDY/3.1+portforward.k8s.io']);
    assert.ok(conn.ok);
    if (!conn.ok) return;
    assert.equal(conn.protocol, 'SPDY/3.1+portforward.k8s.io');
    const session = new SpdySession(new WebSocketTunnel(conn.ws), 'client');
    const a = spdyForwardPort(session, httpPort);
    const b = spdyForwardPort(session, httpPort);
    const [ra, rb] = await Promise.all([httpGetOver(a.data, '/ta'), httpGetOver(b.data, '/tb')]);
    assert.match(ra, /hello from \/ta$/);
    assert.match(rb, /hello from \/tb$/);
    const closed = spdyForwardPort(session, 1);
    closed.data.end();
    assert.match((await collect(closed.error)).toString(), /error forwarding port 1/);
    session.close();
  });

  test('WebSocket: port prefix on both channels, then the data', async () => {
    const url = server.urlFor({ kind: 'portforward', podSandboxId: 'p1', ports: [] });
    const s = await wsChannelSession(`${url}?port=${httpPort}`, ['v4.channel.k8s.io']);
    await s.send(0, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const closed = await s.closed;
    const data = s.channels.get(0) ?? [];
    assert.equal(data[0].readUInt16LE(0), httpPort);
    assert.equal((s.channels.get(1) ?? [])[0].readUInt16LE(0), httpPort);
    assert.match(Buffer.concat(data.slice(1)).toString(), /hello from \/ws$/);
    assert.equal(closed.code, 1000);
  });
});
