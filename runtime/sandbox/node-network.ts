// The node's pod network as the kubelet sees it: berth's fallback network put
// in place (or berth's old 10-<name>.conflist moved out of the cluster's way)
// at start, the conf dir watched so a cluster's CNI config is picked up while
// berthd runs, NetworkReady from what is configured, and the pod CIDR the
// kubelet sends given to berth's own fallback file (never to a cluster's).
import type { CniNetwork, NetworkStatus } from '../../cni/cni-network';
import { applyPodCidrToDefault, ensureDefaultNetwork, type DefaultNetworkOptions } from '../../cni/default-conflist';
import { isBerthOwned, type NetworkSelection } from '../../cni/network-config-dir';
import type { RuntimeLog } from '../common/log';
import { describeError } from '../errors';

export interface NodeNetworkOptions {
  /** Its conf dir (options.confDir, which a config reload may move) is where berth's fallback lives. */
  network: CniNetwork;
  /** Write berth's fallback network when the conf dir has no config at all. */
  writeDefault: boolean;
  defaults: DefaultNetworkOptions;
  log: RuntimeLog;
}

export class NodeNetwork {
  private podCidrValue = '';
  /** A pod CIDR not yet written into the fallback because pods use its old subnet. */
  private pendingCidr: string | undefined;
  /** Rewrites of the fallback, one at a time. */
  private rewriting: Promise<void> = Promise.resolve();

  constructor(private readonly o: NodeNetworkOptions) {}

  /** Puts the fallback in place (see ensureDefaultNetwork), then watches the conf dir. */
  async start(): Promise<void> {
    const { log } = this.o;
    const outcome = await ensureDefaultNetwork(this.o.network.options.confDir, this.o.defaults, this.o.writeDefault);
    if (outcome.action === 'written') log.info({ path: outcome.path }, 'no CNI network configured: wrote berth\'s fallback (bridge + host-local + portmap + loopback)');
    if (outcome.action === 'migrated') {
      log.info({ from: outcome.migratedFrom, to: outcome.path }, 'moved berth\'s old CNI config out of the cluster\'s way: it is now a fallback that sorts last');
    }
    await this.o.network.watchConfDir((selection, previous) => this.logSelection(selection, previous));
    this.o.network.onDetached = (config) => {
      if (this.pendingCidr !== undefined && (isBerthOwned(config) || config.name === this.o.defaults.name)) void this.rewriteFallback();
    };
  }

  close(): void {
    this.o.network.stopWatching();
  }

  /** NetworkReady. */
  status(): Promise<NetworkStatus> {
    return this.o.network.status();
  }

  /** The pod CIDR last given by the kubelet ("" until then). */
  podCidr(): string {
    return this.podCidrValue;
  }

  /**
   * The kubelet's pod CIDR (UpdateRuntimeConfig): passed to plugins as ipRanges, and written into berth's
   * fallback file, at once or as soon as the last pod on the fallback's old subnet is gone.
   */
  async applyPodCidr(cidr: string): Promise<void> {
    this.podCidrValue = cidr;
    this.pendingCidr = cidr;
    await this.rewriteFallback();
  }

  private rewriteFallback(): Promise<void> {
    this.rewriting = this.rewriting.then(async () => {
      const cidr = this.pendingCidr;
      if (cidr === undefined) return;
      const { log, network } = this.o;
      try {
        // Pods attached before berth marked its file carry the fallback's name instead of the mark.
        const inUse = (await network.cache.listAsync()).some((entry) => isBerthOwned(entry.config) || entry.config.name === this.o.defaults.name);
        const done = await applyPodCidrToDefault(this.o.network.options.confDir, this.o.defaults, cidr, inUse);
        if (done === 'deferred') {
          log.info({ podCidr: cidr }, 'berth\'s fallback CNI network keeps its subnet while pods use it; the pod CIDR follows when they are gone');
          return;
        }
        this.pendingCidr = undefined;
        if (done === 'rewritten') {
          log.info({ podCidr: cidr }, 'berth\'s fallback CNI network now allocates from the pod CIDR');
          await network.rescanConfDir();
        }
      } catch (err) {
        // The CIDR still reaches plugins that take ipRanges; the fallback keeps its subnet.
        this.pendingCidr = undefined;
        log.warn({ podCidr: cidr, err: describeError(err) }, 'could not write the pod CIDR into berth\'s fallback CNI network');
      }
    });
    return this.rewriting;
  }

  private logSelection(selection: NetworkSelection, previous: NetworkSelection | undefined): void {
    const { log } = this.o;
    for (const skipped of selection.skipped) if (!previous?.skipped.includes(skipped)) log.warn({ confDir: selection.confDir }, `CNI config skipped: ${skipped}`);
    const now = selection.network;
    if (now?.path === previous?.network?.path && previous) {
      if (now) log.info({ file: now.path, network: now.list.name }, 'CNI network config changed: new pods get the new version');
      return;
    }
    if (now) {
      log.info({ file: now.path, network: now.list.name, berthFallback: now.berthOwned }, `new pods get CNI network "${now.list.name}"`);
    } else {
      log.warn({ confDir: selection.confDir }, 'no usable CNI network config: NetworkReady is false until one appears');
    }
  }
}
