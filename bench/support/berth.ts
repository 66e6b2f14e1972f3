// berthd as the runtime under test, configured like the reference containerd:
// its own root/state/socket (the test support's BerthdProcess), its own CNI
// network with the same plugin chain, plain-HTTP pulls from the local registry.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BERTHD_ENTRY, berthdLauncher, BerthdProcess } from '../../test/support/berthd-process';
import { CNI_BIN_DIR, writeBridgeConflist } from './cni-network';
import { deleteLink, forceDeleteRuncContainers, unmountUnder } from './host-cleanup';

export { BERTH_BRIDGE, BERTH_SUBNET } from './bench-slot';
import { BERTH_BRIDGE, BERTH_SUBNET } from './bench-slot';

export interface BenchBerthdOptions {
  pauseImage: string;
  plainHttpRegistries: string[];
  logLevel?: string;
}

export class BenchBerthd {
  readonly berthd: BerthdProcess;
  /** CNI config, IPAM leases, CNI cache and pinned namespaces (beside BerthdProcess's own dir). */
  readonly extraDir: string;

  constructor(options: BenchBerthdOptions) {
    this.extraDir = mkdtempSync('/tmp/berth-bench-berth-');
    const confDir = join(this.extraDir, 'cni', 'net.d');
    writeBridgeConflist(confDir, {
      name: 'bench-berth',
      bridge: BERTH_BRIDGE,
      subnet: BERTH_SUBNET,
      ipamDir: join(this.extraDir, 'cni', 'ipam'),
    });
    const extraToml = [
      '[cgroup]',
      'driver = "cgroupfs"',
      '[sandbox]',
      `namespace_dir = ${JSON.stringify(join(this.extraDir, 'ns'))}`,
      `pause_image = ${JSON.stringify(options.pauseImage)}`,
      '[cni]',
      `conf_dir = ${JSON.stringify(confDir)}`,
      `bin_dirs = [${JSON.stringify(CNI_BIN_DIR)}]`,
      `cache_dir = ${JSON.stringify(join(this.extraDir, 'cni', 'cache'))}`,
      'write_default_conflist = false',
      ...options.plainHttpRegistries.flatMap((host) => [`[image.registries.${JSON.stringify(host)}]`, 'plain_http = true']),
    ].join('\n');
    // berthd runs through the build's launcher, with the flags the installed one gives it (shim/node-flags.ts);
    // BENCH_BERTHD_NODE_FLAGS replaces them for trials.
    const trial = process.env.BENCH_BERTHD_NODE_FLAGS;
    const command = trial !== undefined ? [process.execPath, ...trial.split(/\s+/).filter(Boolean), BERTHD_ENTRY] : [berthdLauncher()];
    const logLevel = options.logLevel ?? process.env.BENCH_BERTHD_LOG_LEVEL ?? 'warn';
    this.berthd = new BerthdProcess({ extraToml, topLevel: { log_level: logLevel }, command });
  }

  get root(): string {
    return this.berthd.root;
  }

  async start(): Promise<void> {
    await this.berthd.start(30_000);
  }

  /** Removes every pod berthd still has (best effort: berthd may lack the RPCs yet). */
  async removeAllPods(): Promise<void> {
    const child = this.berthd.child;
    if (!child || child.exitCode !== null) return;
    try {
      const { items } = await this.berthd.client.call('ListPodSandbox', {}, { timeoutMs: 10_000 });
      for (const pod of items) {
        await this.berthd.client.call('StopPodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
        await this.berthd.client.call('RemovePodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
      }
    } catch {
      // nothing to list
    }
  }

  /** Stops berthd by PID, unmounts what is left below its directories, removes them and its bridge. */
  async cleanup(): Promise<void> {
    await this.removeAllPods();
    await this.berthd.stop();
    // conmon outlives berthd by design; the containers' runc state is in berthd's state dir.
    const leftovers = forceDeleteRuncContainers(this.berthd.state);
    if (leftovers.length) console.error(`bench: berthd left ${leftovers.length} runc container(s); force-deleted`);
    unmountUnder(this.berthd.dir);
    unmountUnder(this.extraDir);
    await this.berthd.cleanup();
    rmSync(this.extraDir, { recursive: true, force: true });
    deleteLink(BERTH_BRIDGE);
  }
}
