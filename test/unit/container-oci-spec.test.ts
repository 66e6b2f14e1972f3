// OCI spec generation from plain objects: command semantics, env merge,
// capabilities, resources, cgroup paths, seccomp and namespaces.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { allCapabilities, containerCapabilities, DEFAULT_CAPABILITIES, hostCapabilities } from '../../runtime/container/capabilities';
import { int64Field } from '../../runtime/container/cri-int64';
import { commandLine, mergeEnv, stopSignalOf } from '../../runtime/container/process-spec';
import { cgroupsPathFor, ociResources } from '../../runtime/container/spec-resources';
import { logLocationOf, prepareLogFile } from '../../runtime/container/container-log-file';
import { loadNative } from '../../native';
import { defaultSeccompProfile } from '../../runtime/container/seccomp-profile';
import { filterAnnotations } from '../../runtime/container/spec-annotations';
import { readUserDatabase, resolveUserFrom } from '../../runtime/container/user-lookup';
import { ownsPidNamespace, specNamespaces } from '../../runtime/container/spec-namespaces';
import { isBerthError } from '../../runtime/errors';

const hybrid = { cgroup: { mode: 'hybrid' as const, unifiedMount: '/sys/fs/cgroup/unified', v1Controllers: ['memory'], v2Controllers: ['hugetlb'] } };
const tmp = mkdtempSync('/tmp/berth-spec-');
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('command line', () => {
  const image = { config: { Entrypoint: ['/ep'], Cmd: ['c1'] } };
  test('image entrypoint + cmd when the request has neither', () => assert.deepEqual(commandLine({ command: [], args: [] }, image), ['/ep', 'c1']));
  test('request args replace cmd', () => assert.deepEqual(commandLine({ command: [], args: ['a'] }, image), ['/ep', 'a']));
  test('request command replaces both', () => assert.deepEqual(commandLine({ command: ['x'], args: [] }, image), ['x']));
  test('nothing to run is invalid', () => assert.throws(() => commandLine({ command: [], args: [] }, { config: {} }), (e) => isBerthError(e, 'InvalidArgument')));
});

test('env: image then request, later keys replace earlier ones in place, PATH defaulted', () => {
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], [{ key: 'A', value: 'x' }], ['HOSTNAME=h']), ['HOSTNAME=h', 'A=x', 'B=2', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
});

describe('capabilities', () => {
  const everything = allCapabilities();
  const caps = (add: string[], drop: string[], privileged = false, held = everything) => containerCapabilities(add, drop, privileged, held).capabilities;
  test('default set without edits', () => assert.deepEqual(new Set(caps([], [])), new Set(DEFAULT_CAPABILITIES)));
  test('drop ALL then add one', () => assert.deepEqual(caps(['net_admin'], ['ALL']), ['CAP_NET_ADMIN']));
  test('add ALL then drop one', () => {
    const set = caps(['ALL'], ['CAP_SYS_ADMIN']);
    assert.ok(set.includes('CAP_SYS_PTRACE') && !set.includes('CAP_SYS_ADMIN'));
  });
  test('unknown names are invalid', () => assert.throws(() => caps(['FLY'], []), (e) => isBerthError(e, 'InvalidArgument')));

  // A root without CAP_SYS_RESOURCE in its bounding set (nested containers, this host).
  const held = everything.filter((c) => c !== 'CAP_SYS_RESOURCE');
  test('privileged and ALL mean every capability berthd holds, not every one the kernel knows', () => {
    assert.deepEqual(caps([], [], true, held), held);
    assert.deepEqual(caps(['ALL'], [], false, held), held);
  });
  test('an explicitly added capability berthd lacks is left out and reported', () => {
    const r = containerCapabilities(['SYS_RESOURCE', 'NET_ADMIN'], [], false, held, ['SYS_RESOURCE']);
    assert.ok(!r.capabilities.includes('CAP_SYS_RESOURCE') && r.capabilities.includes('CAP_NET_ADMIN'));
    assert.deepEqual(r.ungranted, ['CAP_SYS_RESOURCE']);
    assert.deepEqual(r.ambient, []);
  });
  test('ambient capabilities are also permitted', () => {
    const r = containerCapabilities([], ['ALL'], false, held, ['NET_BIND_SERVICE']);
    assert.deepEqual(r.capabilities, ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(r.ambient, ['CAP_NET_BIND_SERVICE']);
  });
  test('the held set is read from the bounding and effective masks of a status file', () => {
    const status = join(tmp, 'status');
    // bits 0-23 and 25-40 in the bounding set; effective lacks bit 0 (CAP_CHOWN).
    writeFileSync(status, 'Name:\tx\nCapEff:\t000001fffefffffe\nCapBnd:\t000001fffeffffff\n');
    const got = hostCapabilities(status);
    assert.ok(!got.includes('CAP_SYS_RESOURCE') && !got.includes('CAP_CHOWN') && got.includes('CAP_SYS_ADMIN'));
    assert.equal(got.length, everything.length - 2);
  });
});

describe('resources', () => {
  test('CRI resources map to OCI and unified is refused off cgroup v2', () => {
    const r = ociResources({ cpu_shares: '512', cpu_quota: '50000', cpu_period: '100000', memory_limit_in_bytes: '1048576', cpuset_cpus: '0', cpuset_mems: '', oom_score_adj: '0', hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: '0' }, hybrid);
    assert.deepEqual(r, { cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' }, memory: { limit: 1048576 } });
    assert.throws(() => ociResources({ unified: { 'memory.max': '1' } } as never, hybrid), (e) => isBerthError(e, 'InvalidArgument') && /unified/.test(e.message));
  });
  test('out-of-range numbers name the field', () => {
    assert.throws(() => int64Field('2000', 'x.oom_score_adj', -1000, 1000), (e) => isBerthError(e, 'InvalidArgument') && /x\.oom_score_adj/.test(e.message));
    assert.throws(() => int64Field('12a', 'x.cpu_shares'), (e) => isBerthError(e, 'InvalidArgument'));
  });
  test('cgroup paths per driver', () => {
    assert.equal(cgroupsPathFor('cgroupfs', '/kubepods/pod1', 'abc'), '/kubepods/pod1/abc');
    assert.equal(cgroupsPathFor('systemd', 'kubepods-pod1.slice', 'abc'), 'kubepods-pod1.slice:berth:abc');
  });
});

test('stop signal: request, then image StopSignal, then SIGTERM', () => {
  const image = { config: { StopSignal: 'quit' } } as never;
  assert.equal(stopSignalOf({ stop_signal: 'SIGNAL_RUNTIME_DEFAULT' } as never, image), 'SIGQUIT');
  assert.equal(stopSignalOf({ stop_signal: 'SIGNAL_SIGUSR1' } as never, image), 'SIGUSR1');
  assert.equal(stopSignalOf({ stop_signal: 'SIGNAL_RUNTIME_DEFAULT' } as never, { config: {} } as never), 'SIGTERM');
});

describe('users', () => {
  const passwd = [{ name: 'app', uid: 1000, gid: 1000, home: '/home/app' }];
  const groups = [{ name: 'extra', gid: 2000, members: ['app'] }, { name: 'web', gid: 33, members: [] }];
  test('image USER name:group', () => {
    const u = resolveUserFrom(passwd, groups, { supplementalGroups: [], imageUser: 'app:web' });
    assert.deepEqual([u.uid, u.gid, u.additionalGids], [1000, 33, [33, 2000]]);
  });
  test('a numeric uid without an entry runs with gid 0', () => {
    const u = resolveUserFrom(passwd, groups, { runAsUser: 5, supplementalGroups: [7], imageUser: 'app' });
    assert.deepEqual([u.uid, u.gid, u.additionalGids], [5, 0, [0, 7]]);
  });
  test('Merge (the default): the primary gid, the image\'s /etc/group memberships and the request\'s groups', () => {
    const u = resolveUserFrom(passwd, groups, { runAsUser: 1000, supplementalGroups: [1234], imageUser: '' });
    assert.deepEqual([u.uid, u.gid, u.additionalGids], [1000, 1000, [1000, 1234, 2000]]);
  });
  test('Strict: the primary gid and the request\'s groups only', () => {
    const u = resolveUserFrom(passwd, groups, { runAsUser: 1000, supplementalGroups: [1234], imageUser: '', supplementalGroupsPolicy: 'Strict' });
    assert.deepEqual([u.uid, u.gid, u.additionalGids], [1000, 1000, [1000, 1234]]);
  });
  test('a missing user name is an error', () => assert.throws(() => resolveUserFrom(passwd, groups, { runAsUsername: 'nope', supplementalGroups: [], imageUser: '' }), /nope/));
});

describe('path confinement', () => {
  test('the user database is read from the rootfs itself: missing files are empty, a link is never followed', async () => {
    const root = join(tmp, 'root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    assert.deepEqual(await readUserDatabase(root), { passwd: [], groups: [] });
    writeFileSync(join(root, 'etc', 'group'), 'app:x:1000:\n');
    symlinkSync('/etc/shadow', join(root, 'etc', 'passwd'));
    await assert.rejects(readUserDatabase(root), (e) => isBerthError(e, 'InvalidArgument') && /\/etc\/passwd.*symbolic link/.test(e.message));
    rmSync(join(root, 'etc', 'passwd'));
    writeFileSync(join(root, 'etc', 'passwd'), 'app:x:1000:1000::/home/app:/bin/sh\n');
    const users = await readUserDatabase(root);
    assert.deepEqual([users.passwd[0]?.name, users.groups[0]?.gid], ['app', 1000]);
  });
  test('log files are made below their directory without climbing out or passing through a symlink', () => {
    const native = loadNative();
    const logs = join(tmp, 'logs');
    mkdirSync(logs, { recursive: true });
    symlinkSync('/etc', join(logs, 'evil'));
    symlinkSync(logs, join(tmp, 'logs-link'));
    mkdirSync(join(logs, 'fifo-dir'));
    const made = prepareLogFile(native, logLocationOf(logs, 'c/0.log', '/unused'));
    assert.ok(made.created);
    assert.equal(prepareLogFile(native, logLocationOf(logs, 'c/0.log', '/unused')).created, false, 'found again, not made twice');
    assert.throws(() => logLocationOf(logs, '../x', '/unused'), (e) => isBerthError(e, 'InvalidArgument'));
    assert.throws(() => logLocationOf(`${logs}/../x`, 'c.log', '/unused'), (e) => isBerthError(e, 'InvalidArgument') && /\.\./.test(e.message));
    assert.throws(() => prepareLogFile(native, logLocationOf(logs, 'evil/passwd', '/unused')), (e) => isBerthError(e, 'InvalidArgument') && /symbolic link/.test(e.message));
    assert.throws(() => prepareLogFile(native, logLocationOf(join(tmp, 'logs-link'), 'c/1.log', '/unused')), (e) => isBerthError(e, 'InvalidArgument') && /symbolic link/.test(e.message));
    assert.throws(() => prepareLogFile(native, logLocationOf(logs, 'fifo-dir', '/unused')), (e) => isBerthError(e, 'InvalidArgument') && /not a regular file/.test(e.message));
  });
});

test('RuntimeDefault seccomp denies namespace and mount calls unless CAP_SYS_ADMIN', () => {
  const plain = defaultSeccompProfile(DEFAULT_CAPABILITIES);
  assert.equal(plain.defaultAction, 'SCMP_ACT_ERRNO');
  const allowed = new Set(plain.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
  for (const denied of ['unshare', 'mount', 'keyctl', 'ptrace', 'setns', 'bpf', 'init_module']) assert.ok(!allowed.has(denied), denied);
  for (const ok of ['read', 'execve', 'openat', 'futex']) assert.ok(allowed.has(ok), ok);
  const admin = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN']);
  assert.ok(admin.syscalls.some((s) => s.action === 'SCMP_ACT_ALLOW' && s.names.includes('mount')));
});

describe('annotations in config.json', () => {
  const requested = {
    'org.systemd.property.CPUWeight': '10000',
    'run.oci.keep_original_groups': '1',
    'run.oci.handler': 'krun',
    'io.kubernetes.cri.sandbox-id': 'spoofed',
    'example.com/team': 'web',
  };
  test('runtime-acting and berth-reserved annotations are dropped by default; others pass', () => {
    const { kept, dropped } = filterAnnotations(requested, []);
    assert.deepEqual(kept, { 'example.com/team': 'web' });
    assert.deepEqual(dropped.sort(), ['io.kubernetes.cri.sandbox-id', 'org.systemd.property.CPUWeight', 'run.oci.handler', 'run.oci.keep_original_groups']);
  });
  test("a handler's allowed_annotations lets exact keys and prefix* patterns through", () => {
    const { kept } = filterAnnotations(requested, ['run.oci.keep_original_groups', 'org.systemd.property.*']);
    assert.deepEqual(Object.keys(kept).sort(), ['example.com/team', 'org.systemd.property.CPUWeight', 'run.oci.keep_original_groups']);
  });
});

test('a container owns its PID namespace only in CONTAINER mode; POD, TARGET and NODE share one', () => {
  const sandbox = { pidnsPath: '/run/berth-test/ns/pid/pod1' } as Parameters<typeof specNamespaces>[0]['sandbox'];
  const owns = (pid: string): boolean => {
    const config = { linux: { security_context: { namespace_options: { pid } } } } as Parameters<typeof specNamespaces>[0]['config'];
    return ownsPidNamespace({ linux: { namespaces: specNamespaces({ sandbox, config, targetPidNsPath: '/proc/self/fd/9', host: { ...hybrid, minOomScoreAdj: 0 } }) } } as never);
  };
  assert.equal(owns('CONTAINER'), true);
  assert.equal(owns('POD'), false);
  assert.equal(owns('TARGET'), false);
  assert.equal(owns('NODE'), false);
  assert.equal(ownsPidNamespace(undefined), false, 'a container whose spec was never built gets --all');
});
