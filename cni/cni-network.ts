// The pod network through CNI: ADD chains the plugins of the selected network
// (network-config-dir.ts; each plugin gets the previous one's result), DEL and
// CHECK replay the cached attachment, STATUS answers NetworkReady, GC cleans
// attachments whose pod is gone. Once watchConfDir() has run, the conf dir is
// watched and ADD/Status use the last selection (network-config-watch.ts);
// before that every call reads the dir.
import { CNI_ERROR_UNKNOWN_CONTAINER, CniPluginError } from './cni-error';
import type { Attachment, CniResult, NetworkConfigList, PluginConfig, RuntimeConfig } from './cni-types';
import { compareVersions, NetworkConfigError } from './network-config';
import { noNetworkMessage, selectNetwork, type NetworkSelection, type SelectedNetwork } from './network-config-dir';
import { NetworkConfigWatch } from './network-config-watch';
import { execPlugin, findPlugin } from './plugin-exec';
import { ResultCache, type CachedAttachment } from './result-cache';

export interface CniNetworkOptions {
  confDir: string;
  binDirs: readonly string[];
  cacheDir: string;
}

export interface NetworkStatus {
  ready: boolean;
  reason: string;
  message: string;
  /** The config file new pods get, its network's name and config, when there is one. */
  network?: { file: string; name: string; berthFallback: boolean; config: NetworkConfigList };
}

/** NetworkReady's reason while pods cannot get a network (the kubelet's and containerd's word). */
const NOT_READY = 'NetworkPluginNotReady';
/**
 * How long a ready answer is reused for the same selection and bin dirs. The kubelet asks Status every
 * few seconds and a node's berthd answered each with an access() per plugin binary (and, for CNI 1.1
 * networks, a STATUS exec per plugin); a config change is a new selection and is seen at once, a plugin
 * binary removed is seen within this time, as RuntimeReady's binaries are (runtime-readiness.ts).
 * Not-ready answers are not kept: a node waiting for its network sees it the moment it is there.
 */
export const READY_STATUS_KEPT_MS = 5000;

export class CniNetwork {
  readonly cache: ResultCache;
  /** Told the config of each attachment DEL has removed. */
  onDetached: ((config: NetworkConfigList) => void) | undefined;
  private watch: NetworkConfigWatch | undefined;
  private onSelection: ((selection: NetworkSelection, previous: NetworkSelection | undefined) => void) | undefined;
  private readyKept: { selection: NetworkSelection; binDirs: readonly string[]; at: number; status: Promise<NetworkStatus> } | undefined;

  constructor(readonly options: CniNetworkOptions) {
    this.cache = new ResultCache(options.cacheDir);
  }

  /** Where the network config and plugins are looked up from now on (a config reload); attachments keep what they were made with. */
  relocate(locations: { confDir: string; binDirs: readonly string[] }): void {
    const moved = locations.confDir !== this.options.confDir;
    this.options.confDir = locations.confDir;
    this.options.binDirs = [...locations.binDirs];
    this.readyKept = undefined;
    if (moved && this.watch) {
      // Until the new dir's watch has started, each call reads the new dir itself.
      this.watch.close();
      this.watch = undefined;
      void this.watchConfDir(this.onSelection).catch(() => undefined);
    }
  }

  /** Watches the conf dir from now on; `onChange` hears each new selection. */
  async watchConfDir(onChange?: (selection: NetworkSelection, previous: NetworkSelection | undefined) => void): Promise<void> {
    this.onSelection = onChange;
    const confDir = this.options.confDir;
    const watch = new NetworkConfigWatch({ confDir, onChange });
    await watch.start();
    // Relocated meanwhile: this watch is of a dir no longer used.
    if (confDir !== this.options.confDir) watch.close();
    else this.watch = watch;
  }

  /** Reads the conf dir again now (after berthd rewrote a file itself), when watching. */
  async rescanConfDir(): Promise<void> {
    await this.watch?.rescan();
  }

  stopWatching(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  /** What the conf dir offers now. */
  selection(): Promise<NetworkSelection> {
    return this.watch ? Promise.resolve(this.watch.selection()) : selectNetwork(this.options.confDir);
  }

  /** The network ADD would use now; throws NetworkConfigError when there is none or a plugin of it is missing. */
  async currentNetwork(): Promise<SelectedNetwork> {
    const selection = await this.selection();
    if (!selection.network) throw new NetworkConfigError(noNetworkMessage(selection));
    const missing = this.missingPlugin(selection.network.list);
    if (missing) throw new NetworkConfigError(missing);
    return selection.network;
  }

  private missingPlugin(config: NetworkConfigList): string | undefined {
    for (const plugin of config.plugins) {
      if (!findPlugin(this.options.binDirs, plugin.type)) {
        return `CNI plugin "${plugin.type}" of network "${config.name}" not found in ${this.options.binDirs.join(', ')}`;
      }
    }
    return undefined;
  }

  /**
   * Attaches the pod; on failure the partial attachment is deleted (and left cached for a retry if that fails too).
   * Plugins that would do nothing for this pod are left out of the chain (and so of the cached config DEL replays):
   * portmap when the pod maps no ports, loopback when the runtime already brought lo up. Each exec of a
   * plugin costs tens of milliseconds of a pod start.
   */
  async add(attachment: Attachment, options: { loopbackReady?: boolean } = {}): Promise<CniResult> {
    const config = elideNoopPlugins((await this.currentNetwork()).list, attachment.runtimeConfig, options.loopbackReady ?? false);
    const entry: CachedAttachment = { kind: 'berth-cni-attachment-v1', attachment, config, result: null };
    this.cache.write(entry);
    let prevResult: CniResult | undefined;
    try {
      for (const plugin of config.plugins) {
        const out = await execPlugin(this.options.binDirs, plugin.type, {
          command: 'ADD',
          containerId: attachment.containerId,
          netnsPath: attachment.netnsPath,
          ifName: attachment.ifName,
          args: attachment.args,
          stdin: pluginStdin(config, plugin, attachment.runtimeConfig, prevResult),
        });
        if (typeof out !== 'object' || out === null) {
          throw new CniPluginError(plugin.type, 'ADD', { code: 0, msg: 'printed no result' });
        }
        prevResult = out as CniResult;
      }
    } catch (err) {
      try {
        await this.del(attachment.containerId, attachment.ifName);
      } catch {
        // the cache entry stays; the sandbox teardown or GC retries DEL
      }
      throw err;
    }
    const result = prevResult ?? { cniVersion: config.cniVersion };
    this.cache.write({ ...entry, result });
    return result;
  }

  /** Detaches the pod using what ADD used; nothing cached means nothing to undo. Throws when a plugin fails (retry later). */
  async del(containerId: string, ifName = 'eth0'): Promise<void> {
    const entry = this.cache.read(containerId, ifName);
    if (!entry) return;
    const { config, attachment } = entry;
    const withPrev = entry.result && compareVersions(config.cniVersion, '0.4.0') >= 0 ? entry.result : undefined;
    for (const plugin of [...config.plugins].reverse()) {
      try {
        await execPlugin(this.options.binDirs, plugin.type, {
          command: 'DEL',
          containerId,
          netnsPath: attachment.netnsPath,
          ifName,
          args: attachment.args,
          stdin: pluginStdin(config, plugin, attachment.runtimeConfig, withPrev),
        });
      } catch (err) {
        // A plugin that no longer knows the container has nothing left to delete.
        if (err instanceof CniPluginError && err.body.code === CNI_ERROR_UNKNOWN_CONTAINER) continue;
        throw err;
      }
    }
    this.cache.remove(containerId, ifName);
    this.onDetached?.(config);
  }

  /** CHECK with the cached result; throws the plugin's error when the attachment is broken. */
  async check(containerId: string, ifName = 'eth0'): Promise<void> {
    const entry = this.cache.read(containerId, ifName);
    if (!entry || !entry.result) throw new NetworkConfigError(`no attachment recorded for ${containerId}`);
    const { config, attachment } = entry;
    if (compareVersions(config.cniVersion, '0.4.0') < 0 || config.disableCheck) return;
    for (const plugin of config.plugins) {
      await execPlugin(this.options.binDirs, plugin.type, {
        command: 'CHECK',
        containerId,
        netnsPath: attachment.netnsPath,
        ifName,
        args: attachment.args,
        stdin: pluginStdin(config, plugin, attachment.runtimeConfig, entry.result),
      });
    }
  }

  /** NetworkReady: STATUS for CNI 1.1 networks; for older ones the config and every plugin binary must be present. */
  status(): Promise<NetworkStatus> {
    // The usual call (the kubelet's Status, every few seconds): the watched selection with a ready answer kept for
    // it, returned without an async function's own promise and await.
    const kept = this.readyKept;
    if (kept && this.watch && kept.selection === this.watch.selection() && kept.binDirs === this.options.binDirs && Date.now() - kept.at < READY_STATUS_KEPT_MS) {
      return kept.status;
    }
    return this.statusOfSelection();
  }

  private async statusOfSelection(): Promise<NetworkStatus> {
    const selection = await this.selection();
    const binDirs = this.options.binDirs;
    const kept = this.readyKept;
    if (kept && kept.selection === selection && kept.binDirs === binDirs && Date.now() - kept.at < READY_STATUS_KEPT_MS) return kept.status;
    // Calls that arrive while a check runs share it; only a ready outcome stays.
    const entry = { selection, binDirs, at: Date.now(), status: this.checkStatus(selection) };
    this.readyKept = entry;
    const forget = (): void => {
      if (this.readyKept === entry) this.readyKept = undefined;
    };
    entry.status.then((status) => status.ready || forget(), forget);
    return entry.status;
  }

  private async checkStatus(selection: NetworkSelection): Promise<NetworkStatus> {
    const selected = selection.network;
    if (!selected) return { ready: false, reason: NOT_READY, message: noNetworkMessage(selection) };
    const config = selected.list;
    const network = { file: selected.path, name: config.name, berthFallback: selected.berthOwned, config };
    const missing = this.missingPlugin(config);
    if (missing) return { ready: false, reason: NOT_READY, message: missing, network };
    if (compareVersions(config.cniVersion, '1.1.0') >= 0) {
      for (const plugin of config.plugins) {
        try {
          await execPlugin(this.options.binDirs, plugin.type, { command: 'STATUS', stdin: pluginStdin(config, plugin, {}, undefined) });
        } catch (err) {
          return { ready: false, reason: NOT_READY, message: (err as Error).message, network };
        }
      }
    }
    return { ready: true, reason: '', message: '', network };
  }

  /**
   * Deletes every cached attachment whose container is not in `liveIds`, then
   * (CNI 1.1 networks) asks the plugins to GC what is not among the live attachments.
   * Returns the ids it detached and the failures it leaves for next time.
   */
  async gc(liveIds: ReadonlySet<string>): Promise<{ removed: string[]; failed: { id: string; error: string }[] }> {
    const removed: string[] = [];
    const failed: { id: string; error: string }[] = [];
    // The live pods' entries are not read: at a restart that is every pod's (one file each).
    for (const entry of await this.cache.listAsync(liveIds)) {
      const id = entry.attachment.containerId;
      if (liveIds.has(id)) continue;
      try {
        await this.del(id, entry.attachment.ifName);
        removed.push(id);
      } catch (err) {
        failed.push({ id, error: (err as Error).message });
      }
    }
    const config = (await this.selection()).network?.list;
    if (config && compareVersions(config.cniVersion, '1.1.0') >= 0 && !config.disableGC) {
      // Attachments to other networks (pods from before a config change) are not this network's to keep.
      const valid = (await this.cache.listAsync())
        .filter((e) => liveIds.has(e.attachment.containerId) && e.config.name === config.name)
        .map((e) => ({ containerID: e.attachment.containerId, ifname: e.attachment.ifName }));
      for (const plugin of config.plugins) {
        try {
          await execPlugin(this.options.binDirs, plugin.type, {
            command: 'GC',
            stdin: { ...pluginStdin(config, plugin, {}, undefined), 'cni.dev/valid-attachments': valid },
          });
        } catch (err) {
          failed.push({ id: `gc:${plugin.type}`, error: (err as Error).message });
        }
      }
    }
    return { removed, failed };
  }
}

/** The config one plugin of a list sees: its own keys, the list's name and version, the runtime config it asked for, the chain's result so far. */
export function pluginStdin(
  list: NetworkConfigList,
  plugin: PluginConfig,
  runtimeConfig: RuntimeConfig,
  prevResult: CniResult | undefined,
): Record<string, unknown> {
  const stdin: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const wanted: Record<string, unknown> = {};
  for (const [capability, enabled] of Object.entries(plugin.capabilities ?? {})) {
    const value = (runtimeConfig as Record<string, unknown>)[capability];
    if (enabled && value !== undefined) wanted[capability] = value;
  }
  if (Object.keys(wanted).length > 0) stdin.runtimeConfig = wanted;
  else delete stdin.runtimeConfig;
  if (prevResult) stdin.prevResult = prevResult;
  return stdin;
}

/** The pod's IPs from a result: addresses on interfaces inside the sandbox, IPv4 first (the kubelet's primary IP). */
export function podIpsOf(result: CniResult): string[] {
  const interfaces = result.interfaces ?? [];
  const ips = (result.ips ?? [])
    .filter((ip) => ip.interface === undefined || interfaces[ip.interface] === undefined || Boolean(interfaces[ip.interface].sandbox))
    .map((ip) => ip.address.split('/')[0]);
  const unique = [...new Set(ips)];
  return [...unique.filter((ip) => !ip.includes(':')), ...unique.filter((ip) => ip.includes(':'))];
}

/** The chain without plugins that have nothing to do for this attachment (never empties it). */
export function elideNoopPlugins(list: NetworkConfigList, runtimeConfig: RuntimeConfig, loopbackReady: boolean): NetworkConfigList {
  const kept = list.plugins.filter((p) => {
    if (p.type === 'portmap') return (runtimeConfig.portMappings?.length ?? 0) > 0;
    if (p.type === 'loopback') return !loopbackReady;
    return true;
  });
  return kept.length > 0 && kept.length !== list.plugins.length ? { ...list, plugins: kept } : list;
}
