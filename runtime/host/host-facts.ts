// What berthd finds on the host at start: cgroup layout, the capabilities it
// really has, kernel, and which OCI runtimes and conmon are installed. Said once
// in the start log and in Status(verbose), and read by the parts that must adapt
// (oom_score_adj clamping, cgroup paths, crun on hybrid hosts).
import { execFileSync } from 'node:child_process';
import { readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { CAP_SYS_ADMIN, CAP_SYS_RESOURCE, hasCapability, loadNative } from '../../native';
import type { BerthConfig } from '../config';
import { findBinarySync } from './binaries';
import { judgeRuntimeVersion, type RuntimeVersionVerdict } from './runtime-versions';
import { probeCheckpointSupport, type CheckpointSupport } from './checkpoint-support';
import { probeMountFeatures, type MountFeatures } from './mount-features';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const TMPFS_MAGIC = 0x01021994;

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

export interface CgroupFacts {
  mode: CgroupMode;
  /** Where the cgroup2 hierarchy is mounted ("" on pure v1). */
  unifiedMount: string;
  /** v1 controllers mounted under /sys/fs/cgroup/<name>. */
  v1Controllers: string[];
  /** Controllers enabled on the cgroup2 side. */
  v2Controllers: string[];
}

export interface BinaryFacts {
  name: string;
  path: string;
  version: string;
}

export interface HostFacts {
  kernel: string;
  machine: string;
  cgroup: CgroupFacts;
  capabilities: { sysAdmin: boolean; sysResource: boolean };
  /** The lowest oom_score_adj berthd (and so runc) may set. */
  minOomScoreAdj: number;
  ociRuntimes: Record<string, BinaryFacts | { name: string; missing: string }>;
  conmon: BinaryFacts | { name: string; missing: string };
  /** Idmapped and recursive read-only mounts, tried once at start (mount-features.ts). */
  mountFeatures: MountFeatures;
  /** Whether criu can checkpoint here (checkpoint-support.ts). */
  checkpoint: CheckpointSupport;
  /** Each handler's runtime version judged against its minimum (runtime-versions.ts); absent for a missing binary. */
  ociRuntimeVersions?: Record<string, RuntimeVersionVerdict>;
}

export function detectCgroups(root = '/sys/fs/cgroup'): CgroupFacts {
  const type = statfsSync(root).type;
  if (type === CGROUP2_SUPER_MAGIC) {
    return { mode: 'v2', unifiedMount: root, v1Controllers: [], v2Controllers: readControllers(root) };
  }
  if (type !== TMPFS_MAGIC) throw new Error(`${root} is neither cgroup2 nor a tmpfs of v1 hierarchies (statfs type 0x${type.toString(16)})`);
  const v1Controllers: string[] = [];
  let unifiedMount = '';
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType, options] = line.split(' ');
    if (!mountPoint?.startsWith(`${root}/`)) continue;
    if (fsType === 'cgroup2') unifiedMount = mountPoint;
    if (fsType === 'cgroup') {
      for (const option of options.split(',')) {
        if (['rw', 'ro', 'relatime', 'nosuid', 'nodev', 'noexec'].includes(option) || option.startsWith('name=')) continue;
        v1Controllers.push(option);
      }
    }
  }
  return {
    mode: unifiedMount ? 'hybrid' : 'v1',
    unifiedMount,
    v1Controllers: [...new Set(v1Controllers)].sort(),
    v2Controllers: unifiedMount ? readControllers(unifiedMount) : [],
  };
}

function readControllers(dir: string): string[] {
  try {
    return readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

function probeBinary(name: string, binary: string): BinaryFacts | { name: string; missing: string } {
  const path = findBinarySync(binary);
  if (!path) return { name, missing: `${binary} not found in PATH` };
  try {
    const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
    const version = out.split('\n')[0].trim();
    return { name, path, version };
  } catch (err) {
    return { name, path, version: `unknown (${(err as Error).message.split('\n')[0]})` };
  }
}

export function detectHost(config: BerthConfig): HostFacts {
  const native = loadNative();
  const uname = native.uname();
  const caps = native.effectiveCapabilities();
  const sysResource = hasCapability(caps, CAP_SYS_RESOURCE);
  const policy = config.oci.oom_score_adj_restriction;
  const restrict = policy === 'always' || (policy === 'auto' && !sysResource);
  const ociRuntimes: HostFacts['ociRuntimes'] = {};
  const ociRuntimeVersions: Record<string, RuntimeVersionVerdict> = {};
  for (const [handler, runtime] of Object.entries(config.oci.runtimes)) {
    const facts = probeBinary(handler, runtime.path);
    ociRuntimes[handler] = facts;
    if ('path' in facts) ociRuntimeVersions[handler] = judgeRuntimeVersion(config, handler, facts.path, facts.version);
  }
  return {
    kernel: uname.release,
    machine: uname.machine,
    cgroup: detectCgroups(),
    capabilities: { sysAdmin: hasCapability(caps, CAP_SYS_ADMIN), sysResource },
    minOomScoreAdj: restrict ? currentOomScoreAdj() : -1000,
    ociRuntimes,
    ociRuntimeVersions,
    conmon: probeBinary('conmon', config.oci.conmon),
    mountFeatures: probeMountFeatures(native, config.state),
    checkpoint: probeCheckpointSupport(findBinarySync(config.oci.criu), uname.release, config.oci.criu),
  };
}

/** Without CAP_SYS_RESOURCE a process may not go below its own oom_score_adj. */
function currentOomScoreAdj(): number {
  try {
    return Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

export function clampOomScoreAdj(facts: Pick<HostFacts, 'minOomScoreAdj'>, wanted: number): number {
  return Math.max(facts.minOomScoreAdj, Math.min(1000, wanted));
}
