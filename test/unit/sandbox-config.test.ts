import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { isBerthError } from '../../runtime/errors';
import { podNameKey, requirePodSandboxId, validatePodSandboxConfig, validateRunPodSandbox } from '../../runtime/sandbox/pod-config-validation';
import { isValidHostname, renderPodHosts, renderResolvConf } from '../../runtime/sandbox/pod-files';
import { bandwidthOf } from '../../runtime/sandbox/pod-network';
import { normalizeSysctlName, resolvePodSysctls, sysctlNamespace, sysctlProcPath } from '../../runtime/sandbox/sysctls';
import { filterSandboxes } from '../../shim/pod-sandbox-rpcs';
import type { PodSandboxView } from '../../runtime/sandbox/sandbox-types';

function config(overrides: Partial<PodSandboxConfig__Output> = {}): PodSandboxConfig__Output {
  return {
    metadata: { name: 'web', namespace: 'default', uid: 'u1', attempt: 0 },
    hostname: 'web',
    log_directory: '/var/log/pods/x',
    dns_config: null,
    port_mappings: [],
    labels: {},
    annotations: {},
    linux: null,
    windows: null,
    ...overrides,
  };
}

function invalidField(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isBerthError(err, 'InvalidArgument'), String(err));
    return err.message.split(':')[0];
  }
  assert.fail('expected INVALID_ARGUMENT');
}

describe('sysctls', () => {
  test('slashed names become dotted names whose own dots are kept as slashes', () => {
    assert.equal(normalizeSysctlName('net/ipv4/conf/eth0.100/forwarding'), 'net.ipv4.conf.eth0/100.forwarding');
    assert.equal(sysctlProcPath('net.ipv4.conf.eth0/100.forwarding'), '/proc/sys/net/ipv4/conf/eth0.100/forwarding');
    assert.equal(sysctlProcPath('net.ipv4.ip_forward'), '/proc/sys/net/ipv4/ip_forward');
  });

  test('only namespaced sysctls are allowed, each in its namespace', () => {
    assert.equal(sysctlNamespace('net.core.somaxconn'), 'net');
    assert.equal(sysctlNamespace('kernel.shmmax'), 'ipc');
    assert.equal(sysctlNamespace('kernel.msgmnb'), 'ipc');
    assert.equal(sysctlNamespace('fs.mqueue.msg_max'), 'ipc');
    assert.equal(sysctlNamespace('kernel.panic'), undefined);
    assert.equal(sysctlNamespace('vm.overcommit_memory'), undefined);
  });

  test('values with "=", newlines or NUL, and names with "+" or "..", are refused', () => {
    for (const [name, value] of [
      ['net.ipv4.ip_forward', '1\nkernel.panic=1'],
      ['net.core.somaxconn', 'a=b'],
      ['net.core.somaxconn', 'x\0'],
      ['kernel.shmmax+net.ipv4.ip_forward', '1'],
      ['net..core', '1'],
      ['net.core.somaxconn', ' '],
      ['kernel.panic', '1'],
    ]) {
      assert.throws(() => resolvePodSysctls({ [name]: value }), (e: unknown) => isBerthError(e, 'InvalidArgument'), `${name}=${value}`);
    }
    assert.deepEqual(resolvePodSysctls({ 'net.ipv4.ping_group_range': '0 2147483647' }), [
      { name: 'net.ipv4.ping_group_range', namespace: 'net', procPath: '/proc/sys/net/ipv4/ping_group_range', value: '0 2147483647' },
    ]);
  });
});

describe('PodSandboxConfig validation', () => {
  test('names the field that is wrong', () => {
    const v = (c: PodSandboxConfig__Output | null): string => invalidField(() => validatePodSandboxConfig(c, 'cgroupfs'));
    assert.equal(v(null), 'config');
    assert.equal(v(config({ metadata: null })), 'config.metadata');
    assert.equal(v(config({ metadata: { name: '', namespace: 'n', uid: 'u', attempt: 0 } })), 'config.metadata.name');
    assert.equal(v(config({ metadata: { name: 'a', namespace: '', uid: 'u', attempt: 0 } })), 'config.metadata.namespace');
    assert.equal(v(config({ log_directory: 'logs' })), 'config.log_directory');
    assert.equal(v(config({ hostname: 'bad_host!' })), 'config.hostname');
    assert.equal(v(config({ dns_config: { servers: ['not-an-ip'], searches: [], options: [] } })), 'config.dns_config.servers[0]');
    assert.equal(v(config({ dns_config: { servers: [], searches: ['a\nnameserver 1.2.3.4'], options: [] } })), 'config.dns_config.searches[0]');
    assert.equal(
      v(config({ port_mappings: [{ protocol: 'TCP', container_port: 70000, host_port: 0, host_ip: '' }] })),
      'config.port_mappings[0].container_port',
    );
  });

  test('host-network pods may not set network sysctls; cgroup parents follow the driver', () => {
    const hostNet = config({
      linux: {
        cgroup_parent: '',
        security_context: { namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD', target_id: '', userns_options: null } } as never,
        sysctls: { 'net.core.somaxconn': '1024' },
        overhead: null,
        resources: null,
      },
    });
    assert.equal(invalidField(() => validatePodSandboxConfig(hostNet, 'cgroupfs')), 'config.linux.sysctls');
    const slice = config({ linux: { cgroup_parent: 'kubepods-pod1.slice', security_context: null, sysctls: {}, overhead: null, resources: null } });
    assert.equal(invalidField(() => validatePodSandboxConfig(slice, 'cgroupfs')), 'config.linux.cgroup_parent');
    assert.doesNotThrow(() => validatePodSandboxConfig(slice, 'systemd'));
  });

  test('without namespace options the pod gets its own network and IPC and per-container PID', () => {
    assert.deepEqual(validatePodSandboxConfig(config(), 'cgroupfs').modes, { network: 'POD', pid: 'CONTAINER', ipc: 'POD' });
  });

  test('bandwidth annotations are checked with the rest of the config, before anything is made', () => {
    assert.equal(invalidField(() => validatePodSandboxConfig(config({ annotations: { 'kubernetes.io/ingress-bandwidth': 'fast' } }), 'cgroupfs')), 'config.annotations');
    assert.deepEqual(validatePodSandboxConfig(config({ annotations: { 'kubernetes.io/egress-bandwidth': '1G' } }), 'cgroupfs').bandwidth, {
      egressRate: 1e9,
      egressBurst: 2 ** 31 - 1,
    });
  });

  test('RunPodSandbox takes the default runtime handler for "" and names an unknown one', () => {
    const berth = { cgroup: { driver: 'cgroupfs' }, oci: { default_runtime: 'runc', runtimes: { runc: {} } } } as unknown as Parameters<typeof validateRunPodSandbox>[2];
    assert.equal(validateRunPodSandbox(config(), '', berth).runtimeHandler, 'runc');
    assert.throws(
      () => validateRunPodSandbox(config(), 'kata', berth),
      (e: unknown) => isBerthError(e, 'InvalidArgument') && /^runtime_handler: no runtime for "kata" is configured \(configured: runc\)$/.test(e.message),
    );
    assert.equal(invalidField(() => validateRunPodSandbox(null, 'runc', berth)), 'config');
  });

  test('an empty pod_sandbox_id is INVALID_ARGUMENT, spelled one way', () => {
    assert.throws(() => requirePodSandboxId(''), (e: unknown) => isBerthError(e, 'InvalidArgument') && e.message === 'pod_sandbox_id: is empty');
    assert.equal(requirePodSandboxId('abc'), 'abc');
  });

  test('the name key tells apart metadata that underscores would run together', () => {
    const a = config({ metadata: { name: 'a_b', namespace: 'c', uid: 'u', attempt: 0 } });
    const b = config({ metadata: { name: 'a', namespace: 'b_c', uid: 'u', attempt: 0 } });
    assert.notEqual(podNameKey(a), podNameKey(b));
  });
});

describe('pod files', () => {
  test('resolv.conf lists searches, servers and options', () => {
    assert.equal(
      renderResolvConf({ servers: ['10.96.0.10', 'fd00::a'], searches: ['ns.svc.cluster.local'], options: ['ndots:5', 'edns0'] }),
      'search ns.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n',
    );
  });

  test('hosts names the pod on each of its IPs', () => {
    const hosts = renderPodHosts('web', ['10.0.0.2', 'fd00::2']);
    assert.match(hosts, /^10\.0\.0\.2\tweb$/m);
    assert.match(hosts, /^fd00::2\tweb$/m);
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  });

  test('host names follow RFC 1123', () => {
    assert.ok(isValidHostname('web-0.example'));
    assert.ok(!isValidHostname('-web'));
    assert.ok(!isValidHostname('a'.repeat(64)));
  });

  test('bandwidth annotations become the bandwidth capability in bits per second', () => {
    assert.deepEqual(bandwidthOf({ 'kubernetes.io/ingress-bandwidth': '10M' }), { ingressRate: 10_000_000, ingressBurst: 2 ** 31 - 1 });
    assert.equal(bandwidthOf({}), undefined);
    assert.throws(() => bandwidthOf({ 'kubernetes.io/egress-bandwidth': 'fast' }));
  });
});

describe('ListPodSandbox filter', () => {
  const view = (id: string, state: PodSandboxView['state'], labels: Record<string, string>): PodSandboxView =>
    ({ id, state, config: config({ labels }) }) as PodSandboxView;
  const all = [view('abc1', 'SANDBOX_READY', { app: 'x' }), view('abd2', 'SANDBOX_NOTREADY', { app: 'y' })];

  test('by id prefix, state and every selector label', () => {
    assert.deepEqual(filterSandboxes(all, null).map((s) => s.id), ['abc1', 'abd2']);
    assert.deepEqual(filterSandboxes(all, { id: 'abc', state: null, label_selector: {} }).map((s) => s.id), ['abc1']);
    assert.deepEqual(filterSandboxes(all, { id: '', state: { state: 'SANDBOX_NOTREADY' }, label_selector: {} }).map((s) => s.id), ['abd2']);
    assert.deepEqual(filterSandboxes(all, { id: '', state: null, label_selector: { app: 'x' } }).map((s) => s.id), ['abc1']);
    assert.deepEqual(filterSandboxes(all, { id: '', state: null, label_selector: { app: 'x', other: '1' } }), []);
  });
});
