// SIGHUP: read the config files again and apply what can change while berthd
// serves. The schema marks those keys (live: log level and format, registries
// with their mirrors and TLS settings, the CNI conf and plugin directories, the
// streaming token TTL); any other changed key is logged as needing a restart.
// A file that does not load leaves the running config as it was.
import type { CniNetwork } from '../cni/cni-network';
import { CONFIG_SCHEMA, type BerthConfig } from '../runtime/config';
import { type ConfigLeaf, type ConfigValue, leavesOf, shownValue } from '../runtime/config-schema';
import { type ConfigSource, type LoadedConfig, loadConfig } from './config';
import type { Logger, LogOutput } from './logger';
import type { StreamingServer } from './streaming/streaming-server';

export interface ConfigChange {
  key: string;
  from: ConfigValue | undefined;
  to: ConfigValue | undefined;
  live: boolean;
}

/** Every leaf whose value differs (a map entry added or removed shows as its leaves); secrets are shown REDACTED. */
export function diffConfigs(running: BerthConfig, next: BerthConfig): ConfigChange[] {
  const byKey = (config: BerthConfig): Map<string, ConfigLeaf> => new Map(leavesOf(CONFIG_SCHEMA, config).map((l) => [l.key, l]));
  const before = byKey(running);
  const after = byKey(next);
  const changes: ConfigChange[] = [];
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    const a = before.get(key);
    const b = after.get(key);
    if (JSON.stringify(a?.value) !== JSON.stringify(b?.value)) {
      changes.push({ key, from: a && shownValue(a), to: b && shownValue(b), live: (a ?? b)!.live });
    }
  }
  return changes;
}

/** The running parts whose settings a reload changes. */
export interface LiveParts {
  network: Pick<CniNetwork, 'relocate'>;
  streaming: Pick<StreamingServer, 'setTokenTtlSeconds'>;
}

/**
 * Writes the live keys of `next` into the running config object (the one every
 * part holds) and into the parts that copied them at start. Registries are
 * replaced in place: the registry client reads the same record at each pull.
 */
export function applyLiveConfig(running: BerthConfig, next: BerthConfig, parts: LiveParts): void {
  running.log_level = next.log_level;
  running.log_format = next.log_format;
  const registries = running.image.registries;
  for (const name of Object.keys(registries)) delete registries[name];
  Object.assign(registries, structuredClone(next.image.registries));
  running.cni.conf_dir = next.cni.conf_dir;
  running.cni.bin_dirs = [...next.cni.bin_dirs];
  parts.network.relocate({ confDir: next.cni.conf_dir, binDirs: next.cni.bin_dirs });
  running.streaming.token_ttl_seconds = next.streaming.token_ttl_seconds;
  parts.streaming.setTokenTtlSeconds(next.streaming.token_ttl_seconds);
}

export interface ReloadOutcome {
  /** The error that kept the running config, when the files did not load. */
  error?: string;
  applied: string[];
  needRestart: string[];
}

export interface ReloadContext {
  source: ConfigSource;
  running: BerthConfig;
  log: Logger;
  logOutput: LogOutput;
  applyLive: (next: BerthConfig) => void;
  /** For tests: the loader (default: the files of `source`). */
  load?: (source: ConfigSource) => LoadedConfig;
}

export function reloadConfig(ctx: ReloadContext): ReloadOutcome {
  let loaded: LoadedConfig;
  try {
    loaded = (ctx.load ?? loadConfig)(ctx.source);
  } catch (err) {
    const error = (err as Error).message;
    ctx.log.error({ err: error }, `config reload failed, berthd keeps the running config: ${error}`);
    return { error, applied: [], needRestart: [] };
  }
  for (const warning of loaded.warnings) ctx.log.warn(`config: ${warning}`);
  const changes = diffConfigs(ctx.running, loaded.config);
  const applied = changes.filter((c) => c.live);
  const needRestart = changes.filter((c) => !c.live);
  ctx.logOutput.format = loaded.config.log_format;
  ctx.log.level = loaded.config.log_level;
  ctx.applyLive(loaded.config);
  if (changes.length === 0) ctx.log.info({ files: loaded.files }, 'config reloaded: nothing changed');
  else if (applied.length > 0) {
    ctx.log.info({ files: loaded.files, changes: applied.map((c) => ({ key: c.key, from: c.from, to: c.to })) },
      `config reloaded: applied ${applied.map((c) => c.key).join(', ')}`);
  }
  if (needRestart.length > 0) {
    ctx.log.warn({ keys: needRestart.map((c) => c.key) },
      `config reload: ${needRestart.map((c) => c.key).join(', ')} changed but take${needRestart.length === 1 ? 's' : ''} effect only when berthd restarts`);
  }
  return { applied: applied.map((c) => c.key), needRestart: needRestart.map((c) => c.key) };
}
