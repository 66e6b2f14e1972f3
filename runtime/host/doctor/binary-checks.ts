// The programs berth runs: conmon, each configured OCI runtime (with its open
// container-escape advisories), and criu for checkpoints.
import { release } from 'node:os';
import { type BinaryProbe, compareVersions, probeBinary } from '../binaries';
import { probeCheckpointSupport } from '../checkpoint-support';
import { cgroupLayout } from './cgroup-checks';
import { type CheckResult, type DoctorContext, fail, ok, warn } from './doctor-types';
import { looksLikeDistributionBuild, openAdvisories, SUGGESTED_RELEASES } from './runtime-advisories';

function probe(ctx: DoctorContext, name: string, binary: string): Promise<BinaryProbe> {
  return probeBinary(name, binary, { hostRoot: ctx.host.dir, cache: ctx.probes.versions });
}

/** The full --version output (runc prints its package build on the "commit:" line). */
async function fullVersionText(ctx: DoctorContext, path: string): Promise<string> {
  const run = await ctx.probes.run(path, ['--version'], { timeoutMs: 5000 });
  return run.status === 0 ? run.stdout.trim() || run.stderr.trim() : '';
}

export async function checkConmon(ctx: DoctorContext): Promise<CheckResult[]> {
  const found = await probe(ctx, 'conmon', ctx.config.oci.conmon);
  const fix = `apt-get install conmon (or set oci.conmon in /etc/berth/berth.toml to its path)`;
  if (!found.found) return [fail('binary.conmon', `conmon not found (${found.problem}): no container can start and Status says RuntimeReady=false`, fix)];
  if (!found.usable) return [fail('binary.conmon', `conmon at ${found.path} does not run: ${found.problem}`, fix)];
  if (found.version && compareVersions(found.version, '2.0.0') < 0) {
    return [warn('binary.conmon', `conmon ${found.version} at ${found.path} is older than 2.0 (berth relies on its 2.x exit files and log format)`, fix)];
  }
  return [ok('binary.conmon', `conmon ${found.version || found.versionText} at ${found.path}`)];
}

export async function checkOciRuntimes(ctx: DoctorContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const [handler, runtime] of Object.entries(ctx.config.oci.runtimes)) {
    const id = `binary.runtime.${handler}`;
    const isDefault = handler === ctx.config.oci.default_runtime;
    const kind = runtime.path.split('/').pop() ?? runtime.path;
    const install = `apt-get install ${kind === 'runc' || kind === 'crun' ? kind : `the "${kind}" runtime`} (or set oci.runtimes.${handler}.path in /etc/berth/berth.toml)`;
    const found = await probe(ctx, `runtime handler "${handler}"`, runtime.path);
    if (!found.found || !found.usable) {
      const what = found.found ? `${found.path} does not run: ${found.problem}` : `not found (${found.problem})`;
      const effect = isDefault ? 'it is the default handler, so no pod can run and RuntimeReady is false' : `pods asking for runtime handler "${handler}" fail`;
      out.push(isDefault ? fail(id, `${kind} for handler "${handler}" ${what}: ${effect}`, install) : warn(id, `${kind} for handler "${handler}" ${what}: ${effect}`, install));
      continue;
    }
    const open = openAdvisories(kind, found.version);
    const shown = `${kind} ${found.version || found.versionText} at ${found.path}`;
    if (open.length === 0) {
      out.push(ok(id, `${shown}${kind === 'runc' || kind === 'crun' ? ': no open container-escape advisory berth knows of' : ''}`));
    } else {
      const full = await fullVersionText(ctx, found.path);
      const distro = looksLikeDistributionBuild(full);
      const list = open.map((a) => `${a.ids.join('/')} (${a.severity}: ${a.summary}; fixed in ${a.fixedIn.join(', ')})`).join('; ');
      const high = open.some((a) => a.severity === 'high');
      const finding = `${shown} predates ${list}${distro ? '; this is a distribution build, which may carry the fixes backported: check its changelog (apt changelog ' + kind + ')' : ''}`;
      const fix = `install ${kind} ${SUGGESTED_RELEASES[kind] ?? 'a fixed release'} or later (a distribution update, or the upstream release binary) and point oci.runtimes.${handler}.path at it`;
      out.push(high && !distro ? fail(id, finding, fix) : warn(id, finding, fix));
    }
    if (kind === 'crun') {
      const layout = await cgroupLayout(ctx);
      if (layout.mode === 'hybrid' && layout.v2Controllers.length > 0) {
        const c = layout.v2Controllers[0];
        out.push(warn(`${id}.hybrid`, `crun refuses this hybrid host while controllers are enabled on its cgroup2 side (${layout.v2Controllers.join(' ')}): pods using handler "${handler}" fail`,
          `mount each of them as v1, e.g. mkdir -p /sys/fs/cgroup/${c} && mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c}, or boot with cgroup v2 only`));
      }
    }
  }
  return out;
}

export async function checkCriu(ctx: DoctorContext): Promise<CheckResult[]> {
  const found = await probe(ctx, 'criu', ctx.config.oci.criu);
  const fix = 'apt-get install criu (or set oci.criu in /etc/berth/berth.toml to a criu that knows this kernel)';
  if (!found.found) return [warn('binary.criu', `criu (${ctx.config.oci.criu}) not found: CheckpointContainer (kubelet checkpoint API) is unavailable`, fix)];
  if (!found.usable) return [warn('binary.criu', `criu at ${found.path} does not run (${found.problem}): checkpoints are unavailable`, fix)];
  const shown = `criu ${found.version || found.versionText} at ${found.path}`;
  if (ctx.host.dir !== '/') return [ok('binary.criu', shown)];
  // criu's own test of this kernel: Debian 12's criu 3.17 installs and runs --version, yet cannot start on Linux 6.13+.
  const support = await probeCheckpointSupport(found.path, release(), ctx.config.oci.criu, ctx.probes);
  if (!support.criu.supported) {
    return [warn('binary.criu', `${support.criu.reason.replace(/\n/g, ' | ')}: CheckpointContainer and restores are unavailable`, 'a criu that knows this kernel (4.1 or later for Linux 6.13+), named by oci.criu')];
  }
  return [ok('binary.criu', `${shown}: criu check passes, containers can be checkpointed and restored`)];
}
