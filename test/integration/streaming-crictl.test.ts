// Exec, attach and port-forward through a real berthd driven by crictl, whose
// streaming clients are client-go's own (SPDY via moby/spdystream, WebSocket
// via gorilla, and port-forward's SPDY-in-WebSocket tunnel). The project's own
// test clients share berth's framing code, so only a foreign client catches
// what both ends get wrong together (client-go once timed out on the second
// SYN_REPLY because our header blocks lacked a sync-flush marker).
// Skipped where crictl is not installed.
import { testNetwork } from '../support/test-network';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig, startSandboxBerthd, type SandboxBerthd, startContainerInPod } from './sandbox-fixture';

const CRICTL = ['/usr/local/bin/crictl', '/usr/bin/crictl'].find((p) => existsSync(p));
const NET = testNetwork({ name: 'bt-strmc-net', bridge: 'bt-strmc0', subnet: '10.97.0.0/24' });

/** 1 MiB that is not all one byte, so a dropped or repeated window shows in the digest. */
const BIG = Buffer.alloc(1024 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7 + (i >> 10)) & 0xff;

interface CrictlResult {
  code: number | null;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

describe('streaming through berthd with crictl (client-go)', { skip: CRICTL === undefined ? 'crictl not installed' : false }, () => {
  let registry: TestRegistry;
  let s: SandboxBerthd;
  let image = '';
  let podId = '';
  let sandboxConfig: ReturnType<typeof podConfig>;
  let sleeper = '';
  let crictlConfig = '';
  const children = new Set<ChildProcess>();

  const call = <M extends Parameters<SandboxBerthd['berthd']['client']['call']>[0]>(method: M, req: unknown) =>
    s.berthd.client.call(method, req as never);

  function crictlArgs(args: string[]): string[] {
    return ['--config', crictlConfig, ...args];
  }

  /** Runs crictl to its end; stdin gets input, then ends unless keepStdinOpen (ended when crictl exits). */
  function crictl(args: string[], opts: { input?: string; keepStdinOpen?: boolean; wrapInTerminal?: boolean } = {}): Promise<CrictlResult> {
    let file = CRICTL!;
    let argv = crictlArgs(args);
    if (opts.wrapInTerminal) {
      // `script` gives crictl a pseudo-terminal as stdin/stdout, as -t demands.
      const quoted = [file, ...argv].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      argv = ['-qefc', quoted, '/dev/null'];
      file = 'script';
    }
    return new Promise((resolve, reject) => {
      const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
      children.add(child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d: Buffer) => err.push(d));
      child.stdin!.on('error', () => undefined);
      if (opts.input !== undefined) child.stdin!.write(opts.input);
      if (!opts.keepStdinOpen) child.stdin!.end();
      // A hung client must fail the test, not hang the suite.
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code, stdout: Buffer.concat(out).toString(), stdoutBytes: Buffer.concat(out), stderr: Buffer.concat(err).toString() });
      });
    });
  }

  /** Starts `crictl port-forward` on a free local port; resolves with the port and the running process. */
  function portForward(transport: 'spdy' | 'websocket', remotePort: number): Promise<{ port: number; child: ChildProcess; output: () => string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(CRICTL!, crictlArgs(['port-forward', '--transport', transport, podId, `0:${remotePort}`]), { stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let text = '';
      const onData = (d: Buffer): void => {
        text += d.toString();
        const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
        if (m) resolve({ port: Number(m[1]), child, output: () => text });
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('error', reject);
      child.once('close', (code) => {
        children.delete(child);
        reject(new Error(`crictl port-forward exited (${code}) before forwarding: ${text}`));
      });
    });
  }

  function httpGet(port: number, path: string): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 30_000 }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
  }

  const run = (name: string, command: string[], extra: Record<string, unknown> = {}): Promise<string> =>
    startContainerInPod(s.berthd, { podId, sandboxConfig, image, name, command, extra: extra });

  before(async () => {
    registry = await startRegistry();
    image = (
      await pushBusyboxImage(registry, 'test/streaming-crictl:v1', {
        extraLayers: [
          [
            { path: 'bin/httpd', type: 'symlink', linkname: 'busybox' },
            { path: 'bin/tty', type: 'symlink', linkname: 'busybox' },
            { path: 'www/', type: 'dir' },
            { path: 'www/index.html', type: 'file', content: 'served through client-go\n' },
            { path: 'www/big', type: 'file', content: BIG },
          ],
        ],
      })
    ).reference;
    s = await startSandboxBerthd(NET);
    crictlConfig = join(s.berthd.dir, 'crictl.yaml');
    writeFileSync(crictlConfig, `runtime-endpoint: unix://${s.berthd.socket}\nimage-endpoint: unix://${s.berthd.socket}\ntimeout: 20\n`);
    await call('PullImage', { image: { image } });
    sandboxConfig = podConfig('strmcpod', { log_directory: `${s.berthd.dir}/podlogs` } as never);
    podId = (await call('RunPodSandbox', { config: sandboxConfig })).pod_sandbox_id;
    sleeper = await run('sleeper', ['sh', '-c', 'exec sleep 600']);
    await run('web', ['httpd', '-f', '-p', '8080', '-h', '/www']);
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await s?.cleanup();
    await registry?.stop();
  });

  for (const transport of ['spdy', 'websocket'] as const) {
    test(`exec over ${transport}: stdout and stderr apart, exit code reported`, async () => {
      const ok = await crictl(['exec', '--transport', transport, sleeper, 'sh', '-c', 'echo out; echo err >&2']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, 'out\n');
      assert.match(ok.stderr, /^err$/m);
      const failed = await crictl(['exec', '--transport', transport, sleeper, 'sh', '-c', 'exit 3']);
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /command terminated with exit code 3/);
    });

    test(`exec -i over ${transport}: stdin reaches the process, 1 MiB both ways`, async () => {
      const echoed = await crictl(['exec', '-i', '--transport', transport, sleeper, 'cat'], { input: 'typed line\n' });
      assert.equal(echoed.code, 0, echoed.stderr);
      assert.equal(echoed.stdout, 'typed line\n');
      const text = BIG.toString('base64');
      const digest = await crictl(['exec', '-i', '--transport', transport, sleeper, 'md5sum'], { input: text });
      assert.equal(digest.stdout.split(' ')[0], createHash('md5').update(text).digest('hex'));
      const big = await crictl(['exec', '--transport', transport, sleeper, 'cat', '/www/big']);
      assert.ok(big.stdoutBytes.equals(BIG), `got ${big.stdoutBytes.length} bytes`);
    });

    test(`exec -it over ${transport}: a terminal, its output and exit code`, async () => {
      const res = await crictl(['exec', '-i', '-t', '--transport', transport, sleeper, 'sh'], {
        input: 'tty; echo tty-$((6*7)); exit 4\n',
        keepStdinOpen: true,
        wrapInTerminal: true,
      });
      assert.match(res.stdout, /\/dev\/pts\/\d+/);
      assert.match(res.stdout, /tty-42/);
      assert.match(res.stdout, /command terminated with exit code 4/);
    });
  }

  test('attach: stdin reaches the container, its output comes back, stdin_once ends it', async () => {
    const id = await run('reader', ['sh'], { stdin: true, stdin_once: true });
    const res = await crictl(['attach', '-i', id], { input: 'echo attached-$((40+2))\n' });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'attached-42\n');
    let state = '';
    for (let i = 0; i < 200 && state !== 'CONTAINER_EXITED'; i++) {
      state = (await call('ContainerStatus', { container_id: id })).status?.state ?? '';
      if (state !== 'CONTAINER_EXITED') await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(state, 'CONTAINER_EXITED');
  });

  for (const transport of ['spdy', 'websocket'] as const) {
    test(`port-forward over ${transport}: several connections, 1 MiB intact`, async () => {
      const pf = await portForward(transport, 8080);
      try {
        let page = await httpGet(pf.port, '/index.html').catch(() => ({ status: 0, body: Buffer.alloc(0) }));
        // httpd may not listen yet on the first try.
        for (let i = 0; i < 40 && page.status !== 200; i++) {
          await new Promise((r) => setTimeout(r, 100));
          page = await httpGet(pf.port, '/index.html').catch(() => ({ status: 0, body: Buffer.alloc(0) }));
        }
        assert.equal(page.body.toString(), 'served through client-go\n');
        const [big, again] = await Promise.all([httpGet(pf.port, '/big'), httpGet(pf.port, '/index.html')]);
        assert.equal(big.status, 200);
        assert.ok(big.body.equals(BIG), `got ${big.body.length} bytes`);
        assert.equal(again.body.toString(), 'served through client-go\n');
        assert.doesNotMatch(pf.output(), /error|lost connection/i);
      } finally {
        pf.child.kill('SIGKILL');
      }
    });
  }
});
