// Malformed CreateContainer requests through a real berthd: whatever the
// request holds (NUL bytes, names over NAME_MAX, bytes that were not UTF-8,
// an image that names no program, paths and ids that do not exist), the
// answer is a clear refusal naming the field or a container, never INTERNAL.
// Each mutation is tried alone, then a bounded number of random combinations
// from a fixed seed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ContainerConfig } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import { startBerthd, type BerthdProcess } from '../support/berthd-process';
import { grpcCode } from '../support/cri-client';
import { pushBusyboxImage } from '../support/oci-image-builder';
import { startRegistry, type TestRegistry } from '../support/registry';
import { podConfig } from './sandbox-fixture';

const SEED = 0x5eed12;
const COMBINATIONS = 60;
const INTERNAL = 13;
const UNKNOWN = 2;
/** Replaced on the wire by bytes that are not UTF-8. */
const NOT_UTF8_MARK = 'NOTUTF8MARK';
const NOT_UTF8_BYTES = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xe9, 0x41, 0xc0, 0xaf]);

function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Case {
  config: ContainerConfig;
  logDirectory: string;
}

type Mutation = [name: string, apply: (c: Case) => void];

describe('malformed CreateContainer requests', () => {
  let registry: TestRegistry;
  let berthd: BerthdProcess;
  const images = { ok: '', noCommand: '', emptyProgram: '' };
  let podId = '';
  const logDir = mkdtempSync('/tmp/berth-fuzz-logs-');
  const sandboxConfig = podConfig('fuzz', {
    log_directory: logDir,
    linux: { cgroup_parent: '', security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } }, sysctls: {} },
  });

  const sc = (c: Case) => {
    c.config.linux ??= {};
    return (c.config.linux.security_context ??= {});
  };
  const MUTATIONS: Mutation[] = [
    ['log_path with a NUL byte', (c) => void (c.config.log_path = 'a\0b.log')],
    ['log_path name over NAME_MAX', (c) => void (c.config.log_path = `${'x'.repeat(256)}.log`)],
    ['log_path over PATH_MAX', (c) => void (c.config.log_path = Array(20).fill('y'.repeat(250)).join('/'))],
    ['log_path not UTF-8 on the wire', (c) => void (c.config.log_path = `${NOT_UTF8_MARK}.log`)],
    ['log_path in plain UTF-8', (c) => void (c.config.log_path = 'é-ü-日本-😀.log')],
    ['log_path with a newline', (c) => void (c.config.log_path = 'a\nb.log')],
    ['log_path climbing out', (c) => void (c.config.log_path = '../escape.log')],
    ['log_path absolute', (c) => void (c.config.log_path = '/etc/berth-fuzz.log')],
    ['log_directory relative', (c) => void (c.logDirectory = 'relative/dir')],
    ['log_directory with a NUL byte', (c) => void (c.logDirectory = `${logDir}/a\0b`)],
    ['log_directory name over NAME_MAX', (c) => void (c.logDirectory = `${logDir}/${'d'.repeat(300)}`)],
    ['command with an empty program', (c) => void (c.config.command = [''])],
    ['command with a NUL byte', (c) => void (c.config.command = ['sh', '-c', 'echo a\0b'])],
    ['args with a NUL byte', (c) => void (c.config.args = ['\0'])],
    ['env key with a NUL byte', (c) => void (c.config.envs = [{ key: 'A\0B', value: Buffer.from('1') }])],
    // KeyValue.value is bytes in berth's api.proto.
    ['env value with a NUL byte', (c) => void (c.config.envs = [{ key: 'A', value: Buffer.from('1\0') }])],
    ['env key empty', (c) => void (c.config.envs = [{ key: '', value: Buffer.from('1') }])],
    ['env value not UTF-8', (c) => void (c.config.envs = [{ key: 'A', value: NOT_UTF8_BYTES }])],
    ['working_dir relative', (c) => void (c.config.working_dir = 'rel/dir')],
    ['working_dir name over NAME_MAX', (c) => void (c.config.working_dir = `/${'w'.repeat(300)}`)],
    ['working_dir with a NUL byte', (c) => void (c.config.working_dir = '/a\0b')],
    ['mount container_path relative', (c) => void (c.config.mounts = [{ container_path: 'rel', host_path: logDir }])],
    ['mount host_path missing', (c) => void (c.config.mounts = [{ container_path: '/m', host_path: '/nonexistent/berth-fuzz' }])],
    ['mount host_path name over NAME_MAX', (c) => void (c.config.mounts = [{ container_path: '/m', host_path: `/${'h'.repeat(300)}` }])],
    ['mount container_path name over NAME_MAX', (c) => void (c.config.mounts = [{ container_path: `/${'k'.repeat(300)}`, host_path: logDir }])],
    ['mount with a NUL byte', (c) => void (c.config.mounts = [{ container_path: '/m\0', host_path: logDir }])],
    ['device missing', (c) => void (c.config.devices = [{ host_path: '/dev/berth-fuzz-none', container_path: '/dev/x', permissions: 'rwm' }])],
    ['device permissions bogus', (c) => void (c.config.devices = [{ host_path: '/dev/null', container_path: '/dev/x', permissions: 'xyz' }])],
    ['image with a NUL byte', (c) => void (c.config.image = { image: 'busy\0box' })],
    ['image not pulled', (c) => void (c.config.image = { image: '127.0.0.1:1/berth/none:1' })],
    ['image naming no program', (c) => void ((c.config.image = { image: images.noCommand }), (c.config.command = []))],
    ['image whose program is empty', (c) => void ((c.config.image = { image: images.emptyProgram }), (c.config.command = []))],
    ['name with a NUL byte', (c) => void (c.config.metadata = { name: 'n\0', attempt: 0 })],
    ['label key with a NUL byte', (c) => void (c.config.labels = { 'k\0': 'v' })],
    ['annotation value not UTF-8 on the wire', (c) => void (c.config.annotations = { k: NOT_UTF8_MARK })],
    ['run_as_username unknown', (c) => void (sc(c).run_as_username = 'nosuchuser')],
    ['run_as_user out of range', (c) => void (sc(c).run_as_user = { value: '99999999999' })],
    ['supplemental group negative', (c) => void (sc(c).supplemental_groups = ['-1'])],
    ['seccomp profile missing', (c) => void (sc(c).seccomp = { profile_type: 'Localhost', localhost_ref: '/nonexistent/berth-fuzz.json' })],
    ['seccomp profile with a NUL byte', (c) => void (sc(c).seccomp = { profile_type: 'Localhost', localhost_ref: '/a\0.json' })],
    ['seccomp profile not JSON', (c) => void (sc(c).seccomp = { profile_type: 'Localhost', localhost_ref: '/etc/hostname' })],
    ['apparmor profile', (c) => void (sc(c).apparmor = { profile_type: 'Localhost', localhost_ref: 'berth-fuzz' })],
    ['capability unknown', (c) => void (sc(c).capabilities = { add_capabilities: ['CAP_BERTH_FUZZ'], drop_capabilities: [] })],
    ['masked path with a NUL byte', (c) => void (sc(c).masked_paths = ['/proc/a\0'])],
    ['pid TARGET missing', (c) => void (sc(c).namespace_options = { pid: 'TARGET', target_id: 'nonexistent' })],
    ['oom_score_adj out of range', (c) => void ((c.config.linux ??= {}).resources = { oom_score_adj: '5000' })],
    ['cpu shares negative', (c) => void ((c.config.linux ??= {}).resources = { cpu_shares: '-5' })],
    ['hugepage size bogus', (c) => void ((c.config.linux ??= {}).resources = { hugepage_limits: [{ page_size: 'big', limit: '1' }] })],
  ];

  const baseCase = (name: string): Case => ({
    config: { metadata: { name, attempt: 0 }, image: { image: images.ok }, command: ['sleep', '600'], log_path: `${name}.log`, linux: {} },
    logDirectory: logDir,
  });

  /** Sends the case; the gRPC code (0 for success, after removing what it made) and the message. */
  async function send(c: Case): Promise<{ code: number; message: string }> {
    const request = { pod_sandbox_id: podId, config: c.config, sandbox_config: { ...sandboxConfig, log_directory: c.logDirectory } };
    let bytes = berthd.client.encode('CreateContainer', request);
    // Every mark becomes bytes that are not UTF-8; the protobuf length prefixes stay right as the lengths match.
    const mark = Buffer.from(NOT_UTF8_MARK);
    const bad = NOT_UTF8_BYTES.subarray(0, mark.length);
    for (let at = bytes.indexOf(mark); at >= 0; at = bytes.indexOf(mark, at + 1)) bytes = Buffer.concat([bytes.subarray(0, at), bad, bytes.subarray(at + mark.length)]);
    try {
      const { container_id } = await berthd.client.callEncoded('CreateContainer', bytes);
      await berthd.client.call('RemoveContainer', { container_id });
      return { code: 0, message: '' };
    } catch (err) {
      return { code: grpcCode(err) ?? -1, message: (err as Error).message };
    }
  }

  before(async () => {
    registry = await startRegistry();
    images.ok = (await pushBusyboxImage(registry, 'test/fuzz:v1')).reference;
    images.noCommand = (await pushBusyboxImage(registry, 'test/fuzz-nocmd:v1', { config: { Cmd: [] } })).reference;
    images.emptyProgram = (await pushBusyboxImage(registry, 'test/fuzz-emptycmd:v1', { config: { Cmd: [''] } })).reference;
    berthd = await startBerthd();
    for (const image of Object.values(images)) await berthd.client.call('PullImage', { image: { image } });
    podId = (await berthd.client.call('RunPodSandbox', { config: sandboxConfig })).pod_sandbox_id;
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

  test('each malformed field alone, then random combinations (fixed seed): never INTERNAL, and a refusal names its field', async () => {
    const problems: string[] = [];
    const trial = async (label: string, mutations: Mutation[], index: number): Promise<void> => {
      const c = baseCase(`fuzz-${index}`);
      for (const [, apply] of mutations) apply(c);
      const { code, message } = await send(c);
      if (code === INTERNAL || code === UNKNOWN || code < 0) problems.push(`${label}: ${message}`);
    };
    let index = 0;
    for (const mutation of MUTATIONS) await trial(mutation[0], [mutation], index++);
    const random = seededRandom(SEED);
    for (let i = 0; i < COMBINATIONS; i++) {
      const picked = [0, 1, 2].slice(0, 2 + Math.floor(random() * 2)).map(() => MUTATIONS[Math.floor(random() * MUTATIONS.length)]);
      await trial(picked.map(([name]) => name).join(' + '), picked, index++);
    }
    assert.deepEqual(problems, []);
    // The daemon took all of it and still serves.
    assert.ok((await berthd.client.call('Version', { version: '0.1.0' })).runtime_name);
    assert.deepEqual((await berthd.client.call('ListContainers', {})).containers, [], 'nothing left half-made');
  });

  test('a refusal names the field at fault', async () => {
    const expectations: [Mutation[0], RegExp][] = [
      ['log_path with a NUL byte', /config\.log_path: contains a NUL byte/],
      ['log_path name over NAME_MAX', /config\.log_path: .*260 bytes long/],
      ['log_path not UTF-8 on the wire', /config\.log_path: is not valid UTF-8/],
      ['command with an empty program', /config\.command\[0\]: the program to run is empty/],
      ['image naming no program', /config\.command: neither the request nor the image names a command/],
      ['image whose program is empty', /the image's Cmd\[0\]: the program to run is empty/],
      ['env key with a NUL byte', /config\.envs\[0\]\.key: contains a NUL byte/],
      ['working_dir name over NAME_MAX', /config\.working_dir: .*300 bytes long/],
    ];
    let index = 1000;
    for (const [name, pattern] of expectations) {
      const mutation = MUTATIONS.find(([n]) => n === name)!;
      const c = baseCase(`named-${index++}`);
      mutation[1](c);
      const { code, message } = await send(c);
      assert.equal(code, 3, `${name}: INVALID_ARGUMENT (${message})`);
      assert.match(message, pattern, name);
    }
  });
});
