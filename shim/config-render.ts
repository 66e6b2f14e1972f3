// What `berthd config default` and `berthd config check` print: the schema as
// a commented TOML file, and the effective config with the file that set each key.
import { CONFIG_SCHEMA } from '../runtime/config';
import { type ConfigValue, leavesOf, redactedCopy, type SectionSpec, shownValue, type ValueSpec } from '../runtime/config-schema';
import { DEFAULT_ORIGIN, type LoadedConfig } from './config';

function tomlValue(v: ConfigValue | readonly string[]): string {
  if (Array.isArray(v)) return `[${v.map((s) => JSON.stringify(s)).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function tomlKey(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

function docLine(field: ValueSpec, live: boolean): string {
  const allowed = field.kind === 'enum' ? ` (${field.values.join(' | ')})` : '';
  return `# ${field.doc}${allowed}${live ? ' [reload applies it]' : ''}`;
}

function renderSection(spec: SectionSpec, path: string[], lines: string[], live: boolean, values?: Record<string, ConfigValue>): void {
  for (const [key, field] of Object.entries(spec.fields)) {
    if (field.kind === 'section' || field.kind === 'map') continue;
    lines.push(docLine(field, live || field.live === true));
    lines.push(`${tomlKey(key)} = ${tomlValue(values?.[key] ?? field.default)}`);
  }
  for (const [key, field] of Object.entries(spec.fields)) {
    const isLive = live || field.live === true;
    if (field.kind === 'section') {
      lines.push('', `# ${field.doc}${field.live ? ' [reload applies it]' : ''}`, `[${[...path, key].map(tomlKey).join('.')}]`);
      renderSection(field, [...path, key], lines, isLive);
    } else if (field.kind === 'map') {
      lines.push('', `# ${field.doc}${field.live ? ' [reload applies it]' : ''}`);
      for (const [name, entryValues] of Object.entries(field.default)) {
        lines.push(`[${[...path, key, name].map(tomlKey).join('.')}]`);
        renderSection(field.entry, [...path, key, name], lines, isLive, entryValues);
        lines.push('');
      }
      if (field.example) {
        lines.push('# For example:', `# [${[...path, key, field.example.key].map(tomlKey).join('.')}]`);
        for (const [k, entryField] of Object.entries(field.entry.fields)) {
          if (entryField.kind === 'section' || entryField.kind === 'map') continue;
          lines.push(`#   ${entryField.doc}`, `# ${tomlKey(k)} = ${tomlValue(field.example.values[k] ?? entryField.default)}`);
        }
      }
    }
  }
}

export function renderDefaultConfig(): string {
  const lines: string[] = [
    '# berthd configuration (/etc/berth/berth.toml). Every key is shown with its default.',
    '# Files in /etc/berth/berth.toml.d/*.toml are applied after this one, in lexical order.',
    '',
  ];
  renderSection(CONFIG_SCHEMA, [], lines, false);
  return lines.join('\n').replace(/\n{3,}/g, '\n\n') + '\n';
}

export interface ConfigCheckEntry {
  key: string;
  value: ConfigValue;
  /** The file (or "command line") that set it, or "default". */
  source: string;
  /** Applied by a reload without a restart. */
  live: boolean;
}

export function configCheckEntries(loaded: LoadedConfig): ConfigCheckEntry[] {
  return leavesOf(CONFIG_SCHEMA, loaded.config).map((leaf) => ({ key: leaf.key, value: shownValue(leaf), source: loaded.origins.get(leaf.key) ?? DEFAULT_ORIGIN, live: leaf.live }));
}

/** The effective config as dotted TOML keys, each followed by the file that set it. */
export function renderConfigCheck(loaded: LoadedConfig): string {
  const lines = [`# files applied, in order: ${loaded.files.length ? loaded.files.join(', ') : 'none (all defaults)'}`];
  for (const warning of loaded.warnings) lines.push(`# warning: ${warning}`);
  const entries = configCheckEntries(loaded).map((e) => [`${e.key} = ${tomlValue(e.value)}`, e.source] as const);
  const width = Math.min(72, Math.max(...entries.map(([text]) => text.length)));
  for (const [text, source] of entries) lines.push(`${text.padEnd(width)}  # ${source}`);
  return `${lines.join('\n')}\n`;
}

export function configCheckJson(loaded: LoadedConfig): string {
  return `${JSON.stringify({ files: loaded.files, warnings: loaded.warnings, keys: configCheckEntries(loaded), config: redactedCopy(CONFIG_SCHEMA, loaded.config) }, null, 2)}\n`;
}
