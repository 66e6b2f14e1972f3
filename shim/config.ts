// Loading berthd's configuration: /etc/berth/berth.toml, then the drop-ins in
// /etc/berth/berth.toml.d/*.toml in lexical order (as CRI-O's crio.conf.d),
// then flags. Each file is checked against the schema (runtime/config.ts) on
// its own, so a bad key or value is reported with the file it is in; the
// origin of every value is kept for `berthd config check`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CONFIG_SCHEMA, type BerthConfig } from '../runtime/config';
import {
  ConfigError, type ConfigOrigins, type ConfigValue, defaultsOf, nestDotted, type OverlayContext, overlayConfig, type Spec,
} from '../runtime/config-schema';

export { ConfigError };
export const DEFAULT_CONFIG_PATH = '/etc/berth/berth.toml';
/** Where `value` came from when no file and no flag set it. */
export const DEFAULT_ORIGIN = 'default';
export const FLAG_ORIGIN = 'command line';

export type ConfigOverrides = Record<string, ConfigValue>;

export interface LoadedConfig {
  config: BerthConfig;
  /** The files read, in the order they were applied (main file first, if it exists). */
  files: string[];
  /** Dotted key -> file (or "command line") that set it last; keys absent here have their default. */
  origins: ConfigOrigins;
  /** Deprecated keys seen, one line each naming its file. */
  warnings: string[];
}

export interface ConfigSource {
  /** The main file. */
  path: string;
  /** A missing default file means "all defaults"; a missing explicit one is an error. */
  explicit: boolean;
  overrides?: ConfigOverrides;
  /** Drop-in directory; default: "<path>.d". */
  dropInDir?: string;
}

export function dropInDirOf(path: string): string {
  return `${path}.d`;
}

function parseFile(text: string, source: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new ConfigError(`config: ${source} is not valid TOML: ${message}`);
  }
}

/** Applies TOML texts (in order) and flag overrides over the defaults, then checks the cross-key rules. */
function assemble(texts: { text: string; source: string }[], overrides: ConfigOverrides): Omit<LoadedConfig, 'files'> {
  const origins: ConfigOrigins = new Map();
  const warnings: string[] = [];
  let config = defaultsOf(CONFIG_SCHEMA);
  for (const { text, source } of texts) {
    const ctx: OverlayContext = { source, origins, warnings };
    config = overlayConfig(CONFIG_SCHEMA, config, parseFile(text, source), ctx);
  }
  for (const [key, value] of Object.entries(overrides)) {
    config = overlayConfig(CONFIG_SCHEMA, config, nestDotted(key, value), { source: FLAG_ORIGIN, origins, warnings });
  }
  checkConsistency(config, origins);
  return { config, origins, warnings };
}

/** Cross-key rules the per-key schema cannot express; the error names the file that set the key. */
function checkConsistency(config: BerthConfig, origins: ConfigOrigins): void {
  const from = (...keys: string[]): string => keys.map((k) => origins.get(k)).find(Boolean) ?? DEFAULT_ORIGIN;
  for (const [name, handler] of Object.entries(config.oci.runtimes)) {
    const key = `oci.runtimes.${JSON.stringify(name)}`;
    // An entry missing a key was declared by whichever file set its other key.
    if (!handler.path) throw new ConfigError(`config: ${from(`${key}.root`)}: ${key}.path: must name the runtime binary`);
    if (!handler.root) throw new ConfigError(`config: ${from(`${key}.path`)}: ${key}.root: must be set`);
  }
  if (!config.oci.runtimes[config.oci.default_runtime]) {
    throw new ConfigError(
      `config: ${from('oci.default_runtime')}: oci.default_runtime: "${config.oci.default_runtime}" is not one of oci.runtimes (${Object.keys(config.oci.runtimes).join(', ')})`,
    );
  }
}

export function defaultConfig(): BerthConfig {
  return defaultsOf(CONFIG_SCHEMA);
}

/** The effective config from one TOML text and dotted-key overrides ("image.max_concurrent_downloads=8"). */
export function buildConfig(tomlText: string | undefined, overrides: ConfigOverrides = {}, source = 'config'): BerthConfig {
  return assemble(tomlText === undefined ? [] : [{ text: tomlText, source }], overrides).config;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The drop-in files of a directory: *.toml, regular files, in lexical (byte) order; none when the directory is missing. */
export function dropInFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw new ConfigError(`config: cannot read the drop-in directory ${dir}: ${code ?? String(err)}`);
  }
  return names
    .filter((name) => name.endsWith('.toml') && !name.startsWith('.'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => join(dir, name))
    .filter((path) => {
      try {
        return statSync(path).isFile();
      } catch {
        return false;
      }
    });
}

/** Reads the main file and its drop-ins and applies the overrides. Throws a ConfigError naming the file at fault. */
export function loadConfig(source: ConfigSource): LoadedConfig {
  const texts: { text: string; source: string }[] = [];
  try {
    texts.push({ text: readFileSync(source.path, 'utf8'), source: source.path });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' || source.explicit) throw new ConfigError(`config: cannot read ${source.path}: ${code ?? String(err)}`);
  }
  for (const path of dropInFiles(source.dropInDir ?? dropInDirOf(source.path))) texts.push({ text: readText(path), source: path });
  const assembled = assemble(texts, source.overrides ?? {});
  return { ...assembled, files: texts.map((t) => t.source) };
}

/** Parses a flag value given as a string into the kind its key expects. */
export function parseOverrideValue(dotted: string, raw: string): ConfigValue {
  let spec: Spec | undefined = CONFIG_SCHEMA;
  for (const part of dotted.split('.')) {
    spec = spec?.kind === 'section' ? (spec.fields[part] ?? spec.fields[spec.renamed?.[part] ?? '']) : undefined;
  }
  if (!spec || spec.kind === 'section' || spec.kind === 'map') throw new ConfigError(`config: unknown key "${dotted}"`);
  if (spec.kind === 'int') {
    if (!/^-?\d+$/.test(raw)) throw new ConfigError(`config: ${dotted}: expected an integer, got ${JSON.stringify(raw)}`);
    return Number(raw);
  }
  if (spec.kind === 'bool') {
    if (raw !== 'true' && raw !== 'false') throw new ConfigError(`config: ${dotted}: expected true or false, got ${JSON.stringify(raw)}`);
    return raw === 'true';
  }
  if (spec.kind === 'strings') return raw === '' ? [] : raw.split(',');
  return raw;
}

