// The container model's request checks (one validator, one wording) and the
// one process every exec runs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import {
  checkContainerId,
  checkExecCommand,
  logPathParts,
  validateCreateContainer,
  validateResourcesUpdate,
} from '../../runtime/container/container-request-validation';
import { execProcess } from '../../runtime/container/process-spec';
import { isBerthError } from '../../runtime/errors';
import type { OciProcess } from '../../runtime/oci/oci-runtime';

const host = { cgroup: { mode: 'hybrid' as const, unifiedMount: '/sys/fs/cgroup/unified', v1Controllers: ['memory'], v2Controllers: [] } };
const pod = { metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 }, log_directory: '/var/log/pods/p' } as unknown as PodSandboxConfig__Output;

function config(over: Record<string, unknown> = {}): ContainerConfig__Output {
  return {
    metadata: { name: 'c', attempt: 0 },
    image: { image: 'busybox' },
    command: [],
    args: [],
    mounts: [],
    devices: [],
    log_path: 'c/0.log',
    linux: { resources: null, security_context: null },
    ...over,
  } as unknown as ContainerConfig__Output;
}

/** Asserts `fn` throws INVALID_ARGUMENT whose message starts with `field`. */
function refuses(fn: () => unknown, field: string): void {
  assert.throws(fn, (e) => isBerthError(e, 'InvalidArgument') && e.message.startsWith(`${field}:`), field);
}

describe('CreateContainer validation', () => {
  const create = (c: ContainerConfig__Output | null, sandboxConfig: PodSandboxConfig__Output | null = pod, podSandboxId = 'pod1') =>
    validateCreateContainer({ podSandboxId, config: c, sandboxConfig }, host);

  test('a complete request passes and gives its config back', () => {
    const c = config();
    assert.equal(create(c), c);
  });

  test('missing parts name their field', () => {
    refuses(() => create(config(), pod, ''), 'pod_sandbox_id');
    refuses(() => create(null), 'config');
    refuses(() => create(config(), null), 'sandbox_config');
    refuses(() => create(config({ metadata: null })), 'config.metadata');
    refuses(() => create(config({ metadata: { name: '', attempt: 0 } })), 'config.metadata.name');
    refuses(() => create(config({ image: { image: '' } })), 'config.image.image');
  });

  test('a relative pod log directory is refused', () => {
    refuses(() => create(config(), { ...pod, log_directory: 'logs' }), 'sandbox_config.log_directory');
  });

  test('log paths are relative and stay below the log directory, in one wording', () => {
    refuses(() => create(config({ log_path: '/etc/passwd' })), 'config.log_path');
    refuses(() => create(config({ log_path: 'a/../../x' })), 'config.log_path');
    assert.deepEqual(logPathParts('./c//0.log'), ['c', '0.log']);
    assert.throws(() => logPathParts('../x'), /leaves the pod's log_directory/);
    assert.throws(() => logPathParts('/x'), /must be relative to the pod's log_directory/);
  });

  test('security context numbers and a group without a user are refused', () => {
    const sc = (security_context: Record<string, unknown>) => config({ linux: { resources: null, security_context } });
    refuses(() => create(sc({ run_as_user: { value: '-1' } })), 'config.linux.security_context.run_as_user');
    refuses(() => create(sc({ run_as_user: { value: '0' }, supplemental_groups: ['x'] })), 'config.linux.security_context.supplemental_groups[0]');
    refuses(() => create(sc({ run_as_group: { value: '5' } })), 'config.linux.security_context.run_as_group');
    refuses(() => create(sc({ namespace_options: { pid: 'TARGET', target_id: '' } })), 'config.linux.security_context.namespace_options.target_id');
  });

  test('resources are checked as the runtime will take them', () => {
    refuses(() => create(config({ linux: { resources: { oom_score_adj: '5000' }, security_context: null } })), 'config.linux.resources.oom_score_adj');
    refuses(() => create(config({ linux: { resources: { unified: { 'memory.max': '1' } }, security_context: null } })), 'config.linux.resources.unified');
  });

  test('mounts and devices name the bad entry', () => {
    refuses(() => create(config({ mounts: [{ container_path: 'rel', host_path: '/x' }] })), 'config.mounts[0].container_path');
    refuses(() => create(config({ mounts: [{ container_path: '/a', host_path: '/x' }, { container_path: '/b', host_path: '' }] })), 'config.mounts[1].host_path');
    refuses(() => create(config({ devices: [{ container_path: '/dev/x', host_path: '', permissions: '' }] })), 'config.devices[0].host_path');
    refuses(() => create(config({ devices: [{ container_path: '/dev/x', host_path: '/dev/null', permissions: 'rwx' }] })), 'config.devices[0].permissions');
  });
});

describe('other container requests', () => {
  test('an empty container id is INVALID_ARGUMENT "container_id: is empty"', () => {
    assert.throws(() => checkContainerId(''), (e) => isBerthError(e, 'InvalidArgument') && e.message === 'container_id: is empty');
    checkContainerId('abc');
  });
  test('an empty ExecSync command is refused', () => refuses(() => checkExecCommand([]), 'cmd'));
  test('an update without resources is refused, and its numbers are checked under "linux"', () => {
    refuses(() => validateResourcesUpdate(null, host), 'linux');
    refuses(() => validateResourcesUpdate({ cpu_shares: 'many' } as never, host), 'linux.cpu_shares');
    assert.deepEqual(validateResourcesUpdate({ cpu_shares: '512' } as never, host).oci, { cpu: { shares: 512 } });
  });
});

describe('the exec process', () => {
  const container: OciProcess = {
    terminal: true,
    consoleSize: { height: 24, width: 80 },
    user: { uid: 1000, gid: 1000, additionalGids: [3000] },
    args: ['sleep', '600'],
    env: ['PATH=/bin', 'TERM=screen'],
    cwd: '/work',
    capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'], inheritable: [], ambient: [] },
    noNewPrivileges: true,
    apparmorProfile: 'berth-test',
    selinuxLabel: 'system_u:system_r:container_t:s0',
    oomScoreAdj: 5,
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
  };

  test("is the container's process with the command and terminal swapped in", () => {
    const p = execProcess(container, ['id'], false);
    const { consoleSize: _size, ...rest } = container;
    assert.deepEqual(p, { ...rest, terminal: false, args: ['id'] });
  });

  test('a terminal gets TERM=xterm only when the container names no TERM', () => {
    assert.deepEqual(execProcess(container, ['sh'], true).env, ['PATH=/bin', 'TERM=screen']);
    assert.deepEqual(execProcess({ ...container, env: ['PATH=/bin'] }, ['sh'], true).env, ['PATH=/bin', 'TERM=xterm']);
    assert.deepEqual(execProcess({ ...container, env: ['PATH=/bin'] }, ['sh'], false).env, ['PATH=/bin']);
  });

  test('leaves the container process untouched', () => {
    const before = JSON.stringify(container);
    execProcess(container, ['sh'], true);
    assert.equal(JSON.stringify(container), before);
  });
});
