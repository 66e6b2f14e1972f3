// berthd as a process: socket ownership, the runtime-info RPCs, UNIMPLEMENTED
// answers, metrics, signals, and bad input on the wire.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import * as http2 from 'node:http2';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { BERTHD_ENTRY, BerthdProcess, startBerthd } from '../support/berthd-process';
import { CriClient, grpcCode } from '../support/cri-client';

/** Sends one raw gRPC request (HTTP/2 POST) and returns the grpc-status trailer. */
function rawGrpc(socket: string, path: string, body: Buffer): Promise<{ grpcStatus: number; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect('http://localhost', { createConnection: () => connect(socket) });
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let headersStatus: string | undefined;
    let headersMessage = '';
    req.on('response', (headers) => {
      // Trailers-only responses carry the status in the headers.
      if (headers['grpc-status'] !== undefined) {
        headersStatus = String(headers['grpc-status']);
        headersMessage = decodeURIComponent(String(headers['grpc-message'] ?? ''));
      }
    });
    req.on('trailers', (trailers) => {
      headersStatus = String(trailers['grpc-status']);
      headersMessage = decodeURIComponent(String(trailers['grpc-message'] ?? ''));
    });
    req.on('data', () => undefined);
    req.on('close', () => {
      session.close();
      if (headersStatus === undefined) reject(new Error('no grpc-status'));
      else resolve({ grpcStatus: Number(headersStatus), message: headersMessage });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function grpcFrame(payload: Buffer, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([header, payload]);
}

describe('berthd server', () => {
  let berthd: BerthdProcess;

  before(async () => {
    berthd = await startBerthd({ extraToml: '[grpc]\nmax_recv_message_bytes = 4096\n' });
  });
  after(async () => {
    await berthd?.cleanup();
  });

  test('Version names berth and the CRI v1 API', async () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
    const v = await berthd.client.call('Version', { version: '0.1.0' });
    assert.equal(v.runtime_name, 'berth');
    assert.equal(v.runtime_version, pkg.version);
    assert.equal(v.runtime_api_version, 'v1');
    assert.equal(v.version, '0.1.0');
  });

  test('the socket is mode 0660 and the pid file names the daemon', () => {
    assert.equal(statSync(berthd.socket).mode & 0o777, 0o660);
    assert.equal(readFileSync(join(berthd.state, 'berth.pid'), 'utf8').trim(), String(berthd.pid));
  });

  test('Status reports RuntimeReady and, without a CNI config, NetworkReady=false with a reason', async () => {
    const s = await berthd.client.call('Status', { verbose: false });
    const conditions = Object.fromEntries((s.status?.conditions ?? []).map((c) => [c.type, c]));
    assert.equal(conditions.RuntimeReady.status, true);
    assert.ok(conditions.NetworkReady, 'NetworkReady condition present');
    if (!conditions.NetworkReady.status) {
      assert.equal(conditions.NetworkReady.reason, 'NetworkPluginNotReady');
      assert.ok(conditions.NetworkReady.message.length > 0);
    }
    assert.deepEqual(s.info, {});
    assert.ok(s.runtime_handlers.some((h) => h.name === 'runc'));
  });

  test('Status verbose carries JSON info: config in effect, cgroup mode, OCI runtimes', async () => {
    const s = await berthd.client.call('Status', { verbose: true });
    const config = JSON.parse(s.info.config) as { socket: string };
    assert.equal(config.socket, berthd.socket);
    assert.match(JSON.parse(s.info.cgroupMode) as string, /^(v1|v2|hybrid)$/);
    const runtimes = JSON.parse(s.info.ociRuntimes) as Record<string, { path?: string }>;
    assert.ok('runc' in runtimes);
  });

  test('RuntimeConfig reports the cgroup driver', async () => {
    const r = await berthd.client.call('RuntimeConfig', {});
    assert.equal(r.linux?.cgroup_driver, 'CGROUPFS');
  });

  test('UpdateRuntimeConfig accepts a pod CIDR and refuses garbage', async () => {
    await berthd.client.call('UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '10.244.1.0/24' } } });
    const s = await berthd.client.call('Status', { verbose: true });
    assert.equal(JSON.parse(s.info.podCidr), '10.244.1.0/24');
    await assert.rejects(
      berthd.client.call('UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: 'not a cidr' } } }),
      (err) => grpcCode(err) === status.INVALID_ARGUMENT,
    );
  });

  test('an RPC berth does not implement answers UNIMPLEMENTED naming it', async () => {
    await assert.rejects(berthd.client.call('CheckpointPod', { pod_sandbox_id: 'x' }), (err: Error) => {
      assert.equal(grpcCode(err), status.UNIMPLEMENTED);
      assert.match(err.message, /CheckpointPod/);
      return true;
    });
  });

  test('an unknown method answers UNIMPLEMENTED', async () => {
    const r = await rawGrpc(berthd.socket, '/runtime.v1.RuntimeService/NoSuchMethod', grpcFrame(Buffer.alloc(0)));
    assert.equal(r.grpcStatus, status.UNIMPLEMENTED);
  });

  test('an oversized request is refused with RESOURCE_EXHAUSTED and the daemon keeps serving', async () => {
    await assert.rejects(berthd.client.call('Version', { version: 'x'.repeat(8192) }), (err) => grpcCode(err) === status.RESOURCE_EXHAUSTED);
    assert.equal((await berthd.client.call('Version', {})).runtime_name, 'berth');
  });

  test('a truncated message gets a gRPC error, not a hang or a crash', async () => {
    const r = await rawGrpc(berthd.socket, '/runtime.v1.RuntimeService/Version', grpcFrame(Buffer.from([0x0a, 0x05, 0x30]), 40));
    assert.notEqual(r.grpcStatus, status.OK);
    assert.equal((await berthd.client.call('Version', {})).runtime_name, 'berth');
  });

  test('bytes that are not protobuf get a gRPC error', async () => {
    const r = await rawGrpc(berthd.socket, '/runtime.v1.RuntimeService/Version', grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])));
    assert.notEqual(r.grpcStatus, status.OK);
    assert.equal((await berthd.client.call('Version', {})).runtime_name, 'berth');
  });

  test('garbage bytes on the socket drop that connection only', async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const socket = connect(berthd.socket);
      socket.on('connect', () => socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\x01\x02garbage'.repeat(50))));
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(true));
      setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 10_000);
    });
    assert.ok(closed, 'berthd closed the garbage connection');
    assert.equal((await berthd.client.call('Version', {})).runtime_name, 'berth');
    assert.equal(berthd.child?.exitCode, null);
  });

  test('/metrics counts calls and errors by method and code', async () => {
    const port = Number(/"msg":"metrics served at \/metrics"/.test(berthd.logs()) ? /"port":(\d+),"msg":"metrics served/.exec(berthd.logs())?.[1] : NaN);
    assert.ok(port > 0, 'metrics port logged');
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, /berth_cri_requests_total\{method="Version"\} \d+/);
    assert.match(text, /berth_cri_request_errors_total\{method="CheckpointPod",code="UNIMPLEMENTED"\} 1/);
    assert.match(text, /berth_cri_request_duration_seconds_bucket/);
    assert.match(text, /berth_process_resident_memory_bytes/);
  });

  test('a second berthd on a live socket refuses to start', () => {
    const run = spawnSync(process.execPath, [BERTHD_ENTRY, '--config', berthd.configPath, '--metrics-port', '0'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 1);
    assert.match(run.stdout + run.stderr, /already serving/);
  });
});

describe('berthd start and stop', () => {
  test('a stale socket file is replaced, and SIGTERM exits 0 removing the socket', async () => {
    const berthd = new BerthdProcess();
    try {
      // A socket file nobody listens on, as a crashed berthd leaves it.
      await new Promise<void>((resolve) => {
        const server = createServer();
        server.listen(berthd.socket, () => {
          // Closing a listening unix server in Node unlinks the file; simulate a crash instead.
          writeFileSync(join(berthd.dir, 'marker'), '');
          resolve();
        });
        (server as unknown as { _handle: { close(): void } })._handle.close();
      });
      await berthd.start();
      assert.equal((await berthd.client.call('Version', {})).runtime_name, 'berth');
      const code = await berthd.stop('SIGTERM');
      assert.equal(code, 0);
      assert.throws(() => statSync(berthd.socket), /ENOENT/);
      assert.match(berthd.logs(), /berthd stopped/);
    } finally {
      await berthd.cleanup();
    }
  });

  test('a config error stops berthd with one line naming the key', () => {
    const berthd = new BerthdProcess({ extraToml: '[image]\nmax_concurrent_downloads = "many"\n' });
    try {
      const run = spawnSync(process.execPath, [BERTHD_ENTRY, '--config', berthd.configPath], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 2);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1);
      assert.match(lines[0], /image\.max_concurrent_downloads: expected an integer/);
    } finally {
      void berthd.cleanup();
    }
  });

  test('an explicit config file that does not exist is an error', () => {
    const run = spawnSync(process.execPath, [BERTHD_ENTRY, '--config', '/nonexistent/berth.toml'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /cannot read \/nonexistent\/berth\.toml/);
  });

  test('a client can talk to berthd with a fresh connection after a restart', async () => {
    const berthd = await startBerthd();
    try {
      await berthd.stop();
      await berthd.start();
      const client = new CriClient(berthd.socket);
      assert.equal((await client.call('Version', {})).runtime_name, 'berth');
      client.close();
    } finally {
      await berthd.cleanup();
    }
  });
});
