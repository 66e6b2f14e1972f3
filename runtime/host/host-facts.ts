// What berthd finds on the host at start: cgroup layout, the capabilities it
// really has, kernel, and which OCI runtimes and conmon are installed. Said once
// in the start log and in Status(verbose), and read by the parts that must adapt
// (oom_score_adj clamping, cgroup paths, crun on hybrid hosts). The programs'
// answers (--version, criu check) are asked all at once without blocking the
// event loop, and come from the host probe cache when the binaries are the ones
// asked before.
import { readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { CAP_SYS_ADMIN, CAP_SYS_RESOURCE, hasCapability, loadNative } from '../../native';
import type { BerthConfig } from '../config';
import { findBinary, probeBinary } from './binaries';
import { HostProbeCache } from './host-probe-cache';
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
  /**
   * The cgroup lines of the mount table as read for the mode (v1 and hybrid), for the cgroup layout
   * (runtime/cgroups/cgroup-layout.ts): with pods the table has hundreds of lines, each read ~5 ms.
   */
  cgroupMountLines?: string;
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
  const cgroupLines: string[] = [];
  let unifiedMount = '';
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType, options] = line.split(' ');
    if (fsType === 'cgroup' || fsType === 'cgroup2') cgroupLines.push(line);
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
    cgroupMountLines: cgroupLines.join('\n'),
  };
}

function readControllers(dir: string): string[] {
  try {
    return readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

async function binaryFacts(name: string, binary: string, probes: HostProbeCache): Promise<BinaryFacts | { name: string; missing: string }> {
  const found = await probeBinary(name, binary, { cache: probes.versions });
  if (!found.found) return { name, missing: found.problem };
  if (!found.usable) return { name, path: found.path, version: `unknown (${found.problem.split('\n')[0]})` };
  return { name, path: found.path, version: found.versionText };
}

export async function detectHost(config: BerthConfig, probes = HostProbeCache.inMemory()): Promise<HostFacts> {
  const native = loadNative();
  const uname = native.uname();
  const caps = native.effectiveCapabilities();
  const sysResource = hasCapability(caps, CAP_SYS_RESOURCE);
  const policy = config.oci.oom_score_adj_restriction;
  const restrict = policy === 'always' || (policy === 'auto' && !sysResource);
  // The programs run (or are found in the cache) while the mounts are probed below.
  const handlers = Object.entries(config.oci.runtimes);
  const programs = Promise.all([
    Promise.all(handlers.map(([handler, runtime]) => binaryFacts(handler, runtime.path, probes))),
    binaryFacts('conmon', config.oci.conmon, probes),
    findBinary(config.oci.criu).then((criu) => probeCheckpointSupport(criu, uname.release, config.oci.criu, probes)),
  ]);
  const cgroup = detectCgroups();
  // Tried on scratch mounts under the state dir: the kernel's answer holds until the next boot.
  const mountFeatures = probes.forThisBoot(`mount-features ${config.state}`, () => probeMountFeatures(native, config.state));
  const [runtimeFacts, conmon, checkpoint] = await programs;
  const ociRuntimes: HostFacts['ociRuntimes'] = {};
  const ociRuntimeVersions: Record<string, RuntimeVersionVerdict> = {};
  handlers.forEach(([handler], i) => {
    const facts = runtimeFacts[i];
    ociRuntimes[handler] = facts;
    if ('path' in facts) ociRuntimeVersions[handler] = judgeRuntimeVersion(config, handler, facts.path, facts.version);
  });
  return {
    kernel: uname.release,
    machine: uname.machine,
    cgroup,
    capabilities: { sysAdmin: hasCapability(caps, CAP_SYS_ADMIN), sysResource },
    minOomScoreAdj: restrict ? currentOomScoreAdj() : -1000,
    ociRuntimes,
    ociRuntimeVersions,
    conmon,
    mountFeatures,
    checkpoint,
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
