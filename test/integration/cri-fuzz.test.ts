// A bounded fuzz of the CRI server: random requests built from api.proto for
// every RPC (round robin, so each is hit), bytes that are no protobuf at all,
// and garbage written straight to the socket. Fixed seed and bounded count
// and time here (BERTH_FUZZ_SEED, BERTH_FUZZ_COUNT, BERTH_FUZZ_SECONDS change
// them; bench/fuzz.sh runs long ones). It asserts: berthd never crashes, no
// answer is INTERNAL (request content must never cause one), nothing appears
// on the host outside the places requests named, and once every pod and
// container the successful calls made is removed, nothing of berth's is left
// (failed calls leave nothing).
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadCriPackage } from '../../cri-proto';
import { grpcCode } from '../support/cri-client';
import { CriMessageFuzzer, FuzzRandom, type FuzzContext } from '../support/cri-fuzz';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { freePort, startRegistry, type TestRegistry } from '../support/registry';
import { testNetwork } from '../support/test-network';
import { removeAllPods, startSandboxBerthd, type SandboxBerthd } from './sandbox-fixture';

const SEED = Number(process.env.BERTH_FUZZ_SEED ?? 20241113);
const COUNT = Number(process.env.BERTH_FUZZ_COUNT ?? 370);
const SECONDS = Number(process.env.BERTH_FUZZ_SECONDS ?? 150);
const CALL_DEADLINE_MS = 20_000;
const STREAM_WINDOW_MS = 1_000;
const INTERNAL = 13;

/** Host places a request could make something in by mistake: their entries before the fuzz. */
const WATCHED = ['/tmp', '/', '/etc/cni/net.d', '/run', '/var/run', '/var/lib', '/var/log', '/etc'];

function entries(dir: string): Set<string> {
  try {
    return new Set(readdirSync(dir).map((name) => join(dir, name)));
  } catch {
    return new Set();
  }
}

/** Every absolute path among a request's strings (what it "names"), and every string it holds. */
function namedPaths(value: unknown, out: Set<string>, strings: Set<string>): void {
  if (typeof value === 'string') {
    strings.add(value);
    if (value.startsWith('/')) out.add(value.split('\u0000')[0]);
  } else if (Array.isArray(value)) {
    for (const v of value) namedPaths(v, out, strings);
  } else if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const [k, v] of Object.entries(value)) {
      strings.add(k);
      if (k.startsWith('/')) out.add(k);
      namedPaths(v, out, strings);
    }
  }
}

function idsIn(value: unknown, ctx: FuzzContext): void {
  if (!value || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)) {
      if (k === 'pod_sandbox_id' && !ctx.podIds.includes(v)) ctx.podIds.push(v);
      if (k === 'container_id' && !ctx.containerIds.includes(v)) ctx.containerIds.push(v);
    } else idsIn(v, ctx);
  }
}

describe('CRI fuzz', () => {
  const net = testNetwork({ name: 'bt-fuzz', bridge: 'bt-fuzz0', subnet: '10.86.11.0/24' });
  let registry: TestRegistry;
  let sandbox: SandboxBerthd;
  const scratch = mkdtempSync('/tmp/berth-fuzz-scratch-');
  const cgroupPrefix = `berth-fuzz-${process.pid}`;
  const before_: Map<string, Set<string>> = new Map();
  const named = new Set<string>();
  const strings = new Set<string>();
  const internals: string[] = [];
  const outcomes = new Map<string, Map<string, number>>();

  before(async () => {
    registry = await startRegistry();
    const image = (await pushBusyboxImage(registry, 'fuzz/busybox:v1')).reference;
    for (const dir of WATCHED) before_.set(dir, entries(dir));
    sandbox = await startSandboxBerthd(net);
    await sandbox.berthd.client.call('PullImage', { image: { image } } as never);
    ctx.images.push(image);
    ctx.registries.push(registry.host, `127.0.0.1:${await freePort()}`);
  });

  after(async () => {
    await sandbox?.cleanup();
    await registry?.stop();
    rmSync(scratch, { recursive: true, force: true });
    for (const root of readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c, cgroupPrefix))) removeCgroupTree(root);
  });

  const ctx: FuzzContext = { random: new FuzzRandom(SEED), scratch, cgroupPrefix, registries: [], images: [], podIds: [], containerIds: [] };

  /** Requests that would succeed, for the RPCs that act on the host: mutated, they reach past validation. */
  const podTemplate = (i: number): Record<string, unknown> => ({
    metadata: { name: `fuzz-${i}`, uid: `uid-${i}`, namespace: 'fuzz', attempt: 0 },
    hostname: `fuzz-${i}`,
    log_directory: join(scratch, 'pods', `p${i}`),
    linux: { cgroup_parent: '', security_context: { namespace_options: { network: ctx.random.pick(['NODE', 'POD']), pid: ctx.random.pick(['POD', 'CONTAINER']), ipc: 'POD' } } },
  });
  const pick = (pool: string[]): string => (pool.length > 0 ? ctx.random.pick(pool) : '');
  const templates: Record<string, (i: number) => Record<string, unknown>> = {
    RunPodSandbox: (i) => ({ config: podTemplate(i), runtime_handler: '' }),
    CreateContainer: (i) => ({
      pod_sandbox_id: pick(ctx.podIds),
      config: {
        metadata: { name: `c${i}`, attempt: 0 },
        image: { image: pick(ctx.images) },
        command: ['sh', '-c', 'echo fuzz; sleep 2'],
        log_path: `c${i}/0.log`,
        linux: { security_context: { namespace_options: { pid: ctx.random.pick(['CONTAINER', 'POD', 'TARGET']), target_id: pick(ctx.containerIds) } } },
        annotations: { 'run.oci.keep_original_groups': '1', 'example.com/x': 'y' },
      },
      sandbox_config: podTemplate(i),
    }),
    StartContainer: () => ({ container_id: pick(ctx.containerIds) }),
    ExecSync: () => ({ container_id: pick(ctx.containerIds), cmd: ['echo', 'x'], timeout: '5' }),
    ReopenContainerLog: () => ({ container_id: pick(ctx.containerIds) }),
    StopContainer: () => ({ container_id: pick(ctx.containerIds), timeout: '1' }),
    RemoveContainer: () => ({ container_id: pick(ctx.containerIds) }),
    StopPodSandbox: () => ({ pod_sandbox_id: pick(ctx.podIds) }),
    RemovePodSandbox: () => ({ pod_sandbox_id: pick(ctx.podIds) }),
    PullImage: () => ({ image: { image: pick(ctx.images) } }),
  };

  test(`random and malformed requests for every RPC (seed ${SEED}, at most ${COUNT} calls or ${SECONDS} s): no crash, no INTERNAL`, async () => {
    const fuzzer = new CriMessageFuzzer();
    const methods = fuzzer.methods();
    const cri = loadCriPackage().runtime.v1;
    const address = `unix:${sandbox.berthd.socket}`;
    const clients = {
      RuntimeService: new cri.RuntimeService(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 }),
      ImageService: new cri.ImageService(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 }),
    };
    const deadline = Date.now() + SECONDS * 1000;
    try {
      for (let i = 0; i < COUNT && Date.now() < deadline; i++) {
        const method = i < methods.length ? methods[i] : ctx.random.pick(methods);
        const definition = (cri[method.service].service as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>)[method.name];
        const raw = ctx.random.chance(0.1);
        const template = templates[method.name]?.(i);
        const request = raw
          ? ctx.random.bytes(ctx.random.int(200))
          : template && ctx.random.chance(0.7)
            ? fuzzer.mutated(ctx, method.requestType, template)
            : fuzzer.message(ctx, method.requestType);
        if (!raw) namedPaths(request, named, strings);
        const serialize = raw ? (b: unknown) => b as Buffer : (definition.requestSerialize as (v: unknown) => Buffer);
        const code = await callOnce(clients[method.service], definition, serialize, request, method.serverStream, ctx);
        const byMethod = outcomes.get(method.name) ?? new Map<string, number>();
        byMethod.set(String(code), (byMethod.get(String(code)) ?? 0) + 1);
        outcomes.set(method.name, byMethod);
        if (code === INTERNAL) internals.push(`${method.name}${raw ? ' (raw bytes)' : ''}: ${lastMessage} <- ${JSON.stringify(request).slice(0, 300)}`);
        if (i % 40 === 39) await garbageOnSocket(sandbox.berthd.socket, ctx.random);
        assert.equal(sandbox.berthd.child?.exitCode, null, `berthd is alive after call ${i} (${method.name})`);
      }
    } finally {
      clients.RuntimeService.close();
      clients.ImageService.close();
    }
    const version = await sandbox.berthd.client.call('Version', { version: '0.1.0' });
    assert.equal(version.runtime_name, 'berth', 'berthd still answers');
    assert.doesNotMatch(sandbox.berthd.logs(), /uncaught exception|unhandled rejection/, 'no handler threw past its call');
    assert.ok(outcomes.size >= methods.length, `every RPC was called (${outcomes.size} of ${methods.length})`);
    assert.deepEqual(internals, [], 'no request content caused INTERNAL');
  });

  test('nothing appears on the host outside the places requests named, and removing what succeeded leaves nothing of berth', async () => {
    const { berthd, nsDir } = sandbox;
    const { containers } = await berthd.client.call('ListContainers', {});
    for (const c of containers) await berthd.client.call('RemoveContainer', { container_id: c.id });
    await removeAllPods(berthd);
    for (const [dir, seen] of before_) {
      // Other test files and builds on this host add entries meanwhile: only one named after request content is berth's doing.
      const added = [...entries(dir)].filter((p) => !seen.has(p) && fromRequestContent(p, strings) && !isNamed(p, named));
      assert.deepEqual(added, [], `nothing new in ${dir} that no request named`);
    }
    assert.deepEqual(readdirSync(join(berthd.root, 'containers')), [], 'no container bundle is left');
    assert.deepEqual(existsSync(join(berthd.state, 'sandboxes')) ? readdirSync(join(berthd.state, 'sandboxes')) : [], [], 'no pod state dir is left');
    for (const kind of readdirSync(nsDir)) assert.deepEqual(readdirSync(join(nsDir, kind)), [], `no ${kind} namespace pin is left`);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '');
    assert.deepEqual(mounts.filter((m) => m.startsWith(`${berthd.dir}/`) && m !== nsDir), [], 'no mount is left under berthd\'s dirs');
    assert.deepEqual(conmonsFor(berthd.dir), [], 'no conmon is left');
    // What the outcome table looked like, for whoever reads a long run's log.
    for (const [method, codes] of outcomes) console.log(`# ${method}: ${[...codes].map(([c, n]) => `${c}=${n}`).join(' ')}`);
  });
});

let lastMessage = '';

/** One call; resolves with its gRPC status code (0 = OK), never rejects. Answers feed the id pools. */
function callOnce(client: grpc.Client, def: grpc.MethodDefinition<unknown, unknown>, serialize: (v: unknown) => Buffer, request: unknown, stream: boolean, ctx: FuzzContext): Promise<number> {
  const deadline = new Date(Date.now() + CALL_DEADLINE_MS);
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null, value?: unknown): void => {
      lastMessage = err?.details ?? '';
      if (value) idsIn(value, ctx);
      resolve(err ? (grpcCode(err) ?? -1) : 0);
    };
    if (!stream) {
      client.makeUnaryRequest(def.path, serialize, def.responseDeserialize, request, new grpc.Metadata(), { deadline }, (err, value) => done(err, value));
      return;
    }
    const call = client.makeServerStreamRequest(def.path, serialize, def.responseDeserialize, request, new grpc.Metadata(), { deadline });
    // Streams like GetContainerEvents never end by themselves: read a while, then cancel (CANCELLED is the expected end).
    const timer = setTimeout(() => call.cancel(), STREAM_WINDOW_MS);
    call.on('data', (m: unknown) => idsIn(m, ctx));
    call.on('error', (err: grpc.ServiceError) => {
      clearTimeout(timer);
      done(err.code === grpc.status.CANCELLED ? null : err);
    });
    call.on('end', () => {
      clearTimeout(timer);
      done(null);
    });
  });
}

/** Bytes that are no HTTP/2 at all, written straight to the socket. */
function garbageOnSocket(socketPath: string, random: FuzzRandom): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const finish = (): void => {
      socket.destroy();
      resolve();
    };
    socket.once('error', finish);
    socket.once('connect', () => {
      socket.write(random.chance(0.5) ? random.bytes(1 + random.int(4096)) : Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + 'x'.repeat(random.int(100))));
      setTimeout(finish, 50);
    });
  });
}

/** Whether an entry's name comes from what requests held (berth made it from request content). */
function fromRequestContent(path: string, strings: Set<string>): boolean {
  const name = path.slice(path.lastIndexOf('/') + 1);
  for (const s of strings) if (name && s.includes(name)) return true;
  return false;
}

function isNamed(path: string, named: Set<string>): boolean {
  for (const n of named) if (n === path || n.startsWith(`${path}/`)) return true;
  return false;
}

function conmonsFor(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('conmon') && argv.some((a) => a.startsWith(dir))) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeCgroupTree(join(dir, child.name));
  try {
    rmdirSync(dir);
  } catch {
    // busy or gone
  }
}

