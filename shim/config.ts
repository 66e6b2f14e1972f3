// berthd's configuration: TOML at /etc/berth/berth.toml, flags on top.
// One schema gives the defaults, the documentation printed by
// `berthd config default`, and the validation that stops berthd with one line
// naming the bad key.
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import type { BerthConfig } from '../runtime/config';

export const DEFAULT_CONFIG_PATH = '/etc/berth/berth.toml';

type Scalar = string | number | boolean;

interface ValueSpec {
  kind: 'string' | 'int' | 'bool' | 'enum' | 'strings';
  doc: string;
  default: Scalar | string[];
  values?: readonly string[];
  min?: number;
  max?: number;
  /** Extra check on a string: returns the problem, or undefined. */
  check?: (value: string) => string | undefined;
}
interface SectionSpec {
  kind: 'section';
  doc: string;
  fields: Record<string, Spec>;
}
interface MapSpec {
  kind: 'map';
  doc: string;
  /** Shape of each entry. */
  entry: SectionSpec;
  /** Entries present when the file says nothing about this table. */
  default: Record<string, Record<string, Scalar | string[]>>;
  /** Printed as an example in the default config. */
  example?: { key: string; values: Record<string, Scalar | string[]> };
}
type Spec = ValueSpec | SectionSpec | MapSpec;

const absolutePath = (v: string): string | undefined =>
  v.startsWith('/') ? undefined : 'must be an absolute path';
const optionalAbsolutePath = (v: string): string | undefined =>
  v === '' || v.startsWith('/') ? undefined : 'must be empty or an absolute path';
const host = (v: string): string | undefined =>
  /^[A-Za-z0-9.:\-\[\]]+$/.test(v) ? undefined : 'must be an IP address or host name';
const cidr = (v: string): string | undefined =>
  /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(v) ? undefined : 'must be an IPv4 CIDR such as 10.85.0.0/16';
const interfaceName = (v: string): string | undefined =>
  /^[A-Za-z0-9_.\-]{1,15}$/.test(v) ? undefined : 'must be a network interface name of at most 15 characters';

const section = (doc: string, fields: Record<string, Spec>): SectionSpec => ({ kind: 'section', doc, fields });
const str = (def: string, doc: string, check?: ValueSpec['check']): ValueSpec => ({ kind: 'string', default: def, doc, check });
const int = (def: number, doc: string, min: number, max = Number.MAX_SAFE_INTEGER): ValueSpec => ({ kind: 'int', default: def, doc, min, max });
const bool = (def: boolean, doc: string): ValueSpec => ({ kind: 'bool', default: def, doc });
const oneOf = (def: string, values: readonly string[], doc: string): ValueSpec => ({ kind: 'enum', default: def, values, doc });
const strings = (def: string[], doc: string, check?: ValueSpec['check']): ValueSpec => ({ kind: 'strings', default: def, doc, check });

export const CONFIG_SCHEMA: SectionSpec = section('berthd configuration', {
  root: str('/var/lib/berth', 'Persistent state: the SQLite database, image content, layers, container bundles.', absolutePath),
  state: str('/run/berth', 'Volatile state that does not survive a reboot.', absolutePath),
  socket: str('/run/berth/berth.sock', 'The CRI gRPC unix socket (kubelet: --container-runtime-endpoint unix://<socket>).', absolutePath),
  log_level: oneOf('info', ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], 'Log level; every RPC is logged at debug.'),
  grpc: section('The CRI gRPC server.', {
    max_recv_message_bytes: int(16 * 1024 * 1024, 'Largest request accepted; larger ones are refused with RESOURCE_EXHAUSTED.', 1024),
    max_send_message_bytes: int(16 * 1024 * 1024, 'Largest response sent.', 1024),
  }),
  metrics: section('Prometheus metrics at http://<address>:<port>/metrics.', {
    enabled: bool(true, 'Serve metrics.'),
    address: str('127.0.0.1', 'Address to listen on.', host),
    port: int(9477, 'Port to listen on (0: any free port).', 0, 65535),
  }),
  cgroup: section('Control groups.', {
    driver: oneOf('cgroupfs', ['cgroupfs', 'systemd'], 'Cgroup driver; must match the kubelet\'s --cgroup-driver.'),
  }),
  oci: section('OCI runtimes, run under conmon.', {
    default_runtime: str('runc', 'Runtime handler used when a pod names none.'),
    conmon: str('conmon', 'The conmon binary (a name is looked up in PATH).'),
    oom_score_adj_restriction: oneOf('auto', ['auto', 'always', 'never'],
      'Clamp oom_score_adj to what berthd may set itself: auto = when it lacks CAP_SYS_RESOURCE.'),
    runtimes: {
      kind: 'map',
      doc: 'Runtime handlers by name (the CRI runtime_handler).',
      entry: section('One runtime handler.', {
        path: str('', 'The runtime binary (a name is looked up in PATH).'),
        root: str('', 'The runtime\'s --root state directory.', absolutePath),
      }),
      default: {
        runc: { path: 'runc', root: '/run/berth/runc' },
        crun: { path: 'crun', root: '/run/berth/crun' },
      },
    },
  }),
  sandbox: section('Pod sandboxes.', {
    namespace_dir: str('/var/run/berth/ns', 'Where pod namespaces are pinned (<dir>/<net|ipc|uts>/<pod>).', absolutePath),
    pause_image: str('registry.k8s.io/pause:3.10', 'Reported to the kubelet as the sandbox image; berth runs no pause container.'),
  }),
  image: section('Image pulls and the image store.', {
    max_concurrent_downloads: int(4, 'Layers downloaded at once per pull.', 1, 64),
    pull_timeout_seconds: int(600, 'A pull that makes no progress for this long fails.', 1),
    max_layer_unpacked_bytes: int(64 * 1024 * 1024 * 1024, 'A layer that unpacks to more than this fails the pull.', 1),
    max_compression_ratio: int(1000, 'A layer whose unpacked size exceeds its compressed size times this fails the pull.', 1),
    registries: {
      kind: 'map',
      doc: 'Per-registry settings, keyed by registry host as it appears in image names (docker.io, localhost:5000, ...).',
      entry: section('One registry.', {
        mirrors: strings([], 'Endpoints tried first, in order, e.g. "http://127.0.0.1:5000".',
          (v) => /^https?:\/\/[^\s/]+(\/.*)?$/.test(v) ? undefined : 'must be an http:// or https:// URL'),
        plain_http: bool(false, 'Talk plain HTTP to the registry itself.'),
        insecure_skip_verify: bool(false, 'Accept any TLS certificate from the registry.'),
        ca_file: str('', 'PEM file of extra CAs for this registry.', optionalAbsolutePath),
        fallback_to_upstream: bool(true, 'When every mirror fails, try the registry itself.'),
      }),
      default: {},
      example: { key: 'localhost:5000', values: { plain_http: true } },
    },
  }),
  cni: section('Pod networking through CNI plugins.', {
    conf_dir: str('/etc/cni/net.d', 'The first .conflist/.conf here (in lexical order) is the pod network.', absolutePath),
    bin_dirs: strings(['/opt/cni/bin', '/usr/lib/cni'], 'Directories searched for plugin binaries, in order.', absolutePath),
    cache_dir: str('/var/lib/berth/cni', 'Results of ADD kept for DEL and CHECK.', absolutePath),
    write_default_conflist: bool(true, 'Write a bridge conflist into conf_dir when it has none.'),
    default_network_name: str('berth', 'Name of the network in the written conflist.'),
    default_bridge: str('berth0', 'Bridge of the written conflist.', interfaceName),
    default_subnet: str('10.85.0.0/16', 'Pod subnet of the written conflist.', cidr),
  }),
  streaming: section('The exec/attach/port-forward streaming server.', {
    address: str('127.0.0.1', 'Address to listen on.', host),
    port: int(0, 'Port to listen on (0: any free port).', 0, 65535),
    token_ttl_seconds: int(60, 'How long a streaming URL stays valid.', 1, 3600),
  }),
  container: section('Containers.', {
    exec_sync_max_output_bytes: int(16 * 1024 * 1024, 'ExecSync captures at most this much of each of stdout and stderr.', 1024),
    seccomp_default_profile: str('', 'JSON seccomp profile for RuntimeDefault; empty: the profile built into berth.', optionalAbsolutePath),
  }),
});

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function defaultsOf(spec: SectionSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(spec.fields)) {
    if (field.kind === 'section') out[key] = defaultsOf(field);
    else if (field.kind === 'map') {
      const entries: Record<string, unknown> = {};
      for (const [name, values] of Object.entries(field.default)) {
        entries[name] = { ...defaultsOf(field.entry), ...structuredClone(values) };
      }
      out[key] = entries;
    } else out[key] = Array.isArray(field.default) ? [...field.default] : field.default;
  }
  return out;
}

function checkValue(path: string, spec: ValueSpec, value: unknown): Scalar | string[] {
  const fail = (what: string): never => {
    throw new ConfigError(`config: ${path}: ${what}, got ${JSON.stringify(value)}`);
  };
  switch (spec.kind) {
    case 'string': {
      if (typeof value !== 'string') fail('expected a string');
      const problem = spec.check?.(value as string);
      if (problem) fail(problem);
      return value as string;
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values!.includes(value)) fail(`expected one of ${spec.values!.join(', ')}`);
      return value as string;
    case 'bool':
      if (typeof value !== 'boolean') fail('expected true or false');
      return value as boolean;
    case 'int': {
      const n = typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) fail('expected an integer');
      if ((n as number) < spec.min! || (n as number) > spec.max!) fail(`expected an integer from ${spec.min} to ${spec.max}`);
      return n as number;
    }
    case 'strings': {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) fail('expected a list of strings');
      for (const item of value as string[]) {
        const problem = spec.check?.(item);
        if (problem) throw new ConfigError(`config: ${path}: ${JSON.stringify(item)} ${problem}`);
      }
      return [...(value as string[])];
    }
  }
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Overlays `input` on `target` (defaults), checking every key against the schema. */
function overlay(spec: SectionSpec, target: Record<string, unknown>, input: Record<string, unknown>, prefix: string): void {
  for (const [key, value] of Object.entries(input)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const field = spec.fields[key];
    if (!field) {
      const known = Object.keys(spec.fields).join(', ');
      throw new ConfigError(`config: unknown key "${path}" (known here: ${known})`);
    }
    if (field.kind === 'section') {
      if (!isTable(value)) throw new ConfigError(`config: ${path}: expected a table, got ${JSON.stringify(value)}`);
      overlay(field, target[key] as Record<string, unknown>, value, path);
    } else if (field.kind === 'map') {
      if (!isTable(value)) throw new ConfigError(`config: ${path}: expected a table, got ${JSON.stringify(value)}`);
      const entries = target[key] as Record<string, Record<string, unknown>>;
      for (const [name, entryValue] of Object.entries(value)) {
        const entryPath = `${path}.${JSON.stringify(name)}`;
        if (!isTable(entryValue)) throw new ConfigError(`config: ${entryPath}: expected a table, got ${JSON.stringify(entryValue)}`);
        entries[name] ??= defaultsOf(field.entry);
        overlay(field.entry, entries[name], entryValue, entryPath);
      }
    } else {
      target[key] = checkValue(path, field, value);
    }
  }
}

/** Cross-key rules the per-key schema cannot express. */
function checkConsistency(config: BerthConfig): void {
  for (const [name, handler] of Object.entries(config.oci.runtimes)) {
    if (!handler.path) throw new ConfigError(`config: oci.runtimes.${JSON.stringify(name)}.path: must name the runtime binary`);
    if (!handler.root) throw new ConfigError(`config: oci.runtimes.${JSON.stringify(name)}.root: must be set`);
  }
  if (!config.oci.runtimes[config.oci.default_runtime]) {
    throw new ConfigError(
      `config: oci.default_runtime: "${config.oci.default_runtime}" is not one of oci.runtimes (${Object.keys(config.oci.runtimes).join(', ')})`,
    );
  }
}

export function defaultConfig(): BerthConfig {
  return defaultsOf(CONFIG_SCHEMA) as unknown as BerthConfig;
}

/** Builds the effective config from TOML text and dotted-key overrides ("image.max_concurrent_downloads=8"). */
export function buildConfig(tomlText: string | undefined, overrides: Record<string, Scalar | string[]> = {}, source = 'config'): BerthConfig {
  const config = defaultsOf(CONFIG_SCHEMA);
  if (tomlText !== undefined) {
    let parsed: Record<string, unknown>;
    try {
      parsed = parseToml(tomlText) as Record<string, unknown>;
    } catch (err) {
      const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new ConfigError(`config: ${source} is not valid TOML: ${message}`);
    }
    overlay(CONFIG_SCHEMA, config, parsed, '');
  }
  for (const [dotted, value] of Object.entries(overrides)) {
    overlay(CONFIG_SCHEMA, config, nestDotted(dotted, value), '');
  }
  const typed = config as unknown as BerthConfig;
  checkConsistency(typed);
  return typed;
}

function nestDotted(dotted: string, value: unknown): Record<string, unknown> {
  const parts = dotted.split('.');
  const root: Record<string, unknown> = {};
  let cursor = root;
  parts.slice(0, -1).forEach((part) => {
    const next: Record<string, unknown> = {};
    cursor[part] = next;
    cursor = next;
  });
  cursor[parts[parts.length - 1]] = value;
  return root;
}

/** Reads the config file; a missing default file means "all defaults", a missing explicit one is an error. */
export function loadConfigFile(path: string, explicit: boolean, overrides: Record<string, Scalar | string[]> = {}): BerthConfig {
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' || explicit) throw new ConfigError(`config: cannot read ${path}: ${code ?? String(err)}`);
  }
  return buildConfig(text, overrides, path);
}

/** Parses a flag value given as a string into the kind its key expects. */
export function parseOverrideValue(dotted: string, raw: string): Scalar | string[] {
  let spec: Spec | undefined = CONFIG_SCHEMA;
  for (const part of dotted.split('.')) {
    if (!spec || spec.kind !== 'section') break;
    spec = spec.fields[part];
  }
  if (!spec) throw new ConfigError(`config: unknown key "${dotted}"`);
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

// ---- `berthd config default` ----------------------------------------------

function tomlValue(v: Scalar | string[]): string {
  if (Array.isArray(v)) return `[${v.map((s) => JSON.stringify(s)).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function tomlKey(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

function renderSection(spec: SectionSpec, path: string[], lines: string[], values?: Record<string, Scalar | string[]>): void {
  const scalars = Object.entries(spec.fields).filter(([, f]) => f.kind !== 'section' && f.kind !== 'map') as [string, ValueSpec][];
  for (const [key, field] of scalars) {
    const allowed = field.values ? ` (${field.values.join(' | ')})` : '';
    lines.push(`# ${field.doc}${allowed}`);
    lines.push(`${tomlKey(key)} = ${tomlValue(values?.[key] ?? field.default)}`);
  }
  for (const [key, field] of Object.entries(spec.fields)) {
    if (field.kind === 'section') {
      lines.push('', `# ${field.doc}`, `[${[...path, key].map(tomlKey).join('.')}]`);
      renderSection(field, [...path, key], lines);
    } else if (field.kind === 'map') {
      lines.push('', `# ${field.doc}`);
      const entries = Object.entries(field.default);
      for (const [name, entryValues] of entries) {
        lines.push(`[${[...path, key, name].map(tomlKey).join('.')}]`);
        renderSection(field.entry, [...path, key, name], lines, entryValues);
        lines.push('');
      }
      if (field.example) {
        lines.push('# For example:');
        lines.push(`# [${[...path, key, field.example.key].map(tomlKey).join('.')}]`);
        for (const [k, entryField] of Object.entries(field.entry.fields) as [string, ValueSpec][]) {
          lines.push(`#   ${entryField.doc}`);
          lines.push(`# ${tomlKey(k)} = ${tomlValue(field.example.values[k] ?? entryField.default)}`);
        }
      }
    }
  }
}

export function renderDefaultConfig(): string {
  const lines: string[] = ['# berthd configuration (/etc/berth/berth.toml). Every key is shown with its default.', ''];
  renderSection(CONFIG_SCHEMA, [], lines);
  return lines.join('\n').replace(/\n{3,}/g, '\n\n') + '\n';
}
