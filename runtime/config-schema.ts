// The machinery behind berth's configuration schema: typed builders, the
// config type derived from a schema (so the shape is written once), defaults,
// and validation that names the file and the dotted key of every bad value.
// The schema itself is runtime/config.ts; loading files is shim/config.ts.

export type ConfigScalar = string | number | boolean;
export type ConfigValue = ConfigScalar | string[];

interface FieldCommon {
  doc: string;
  /** Applied by a reload (SIGHUP) without a restart. */
  live?: boolean;
  /** A credential: shown as REDACTED wherever berth prints the config. */
  secret?: boolean;
}
export interface StringSpec extends FieldCommon {
  kind: 'string';
  default: string;
  /** Extra check: returns the problem, or undefined. */
  check?: (value: string) => string | undefined;
}
export interface EnumSpec<V extends string = string> extends FieldCommon {
  kind: 'enum';
  default: V;
  values: readonly V[];
}
export interface IntSpec extends FieldCommon {
  kind: 'int';
  default: number;
  min: number;
  max: number;
}
export interface BoolSpec extends FieldCommon {
  kind: 'bool';
  default: boolean;
}
export interface StringsSpec extends FieldCommon {
  kind: 'strings';
  default: readonly string[];
  check?: (value: string) => string | undefined;
}
export type ValueSpec = StringSpec | EnumSpec | IntSpec | BoolSpec | StringsSpec;

export interface FieldSpecs {
  [key: string]: Spec;
}
export interface SectionSpec<F extends FieldSpecs = FieldSpecs> extends FieldCommon {
  kind: 'section';
  fields: F;
  /** Deprecated key -> the key of this section it now means (a warning names the file). */
  renamed?: Record<string, string>;
}
export interface MapSpec<E extends SectionSpec = SectionSpec> extends FieldCommon {
  kind: 'map';
  /** Shape of each entry. */
  entry: E;
  /** Entries present when no file says anything about this table. */
  default: Record<string, Record<string, ConfigValue>>;
  /** Printed as an example by `berthd config default`. */
  example?: { key: string; values: Record<string, ConfigValue> };
}
export type Spec = ValueSpec | SectionSpec | MapSpec;

/** The value a spec describes: the one config type, derived from the schema. */
export type ConfigOf<S> =
  S extends SectionSpec<infer F> ? { [K in keyof F]: ConfigOf<F[K]> }
  : S extends MapSpec<infer E> ? Record<string, ConfigOf<E>>
  : S extends EnumSpec<infer V> ? V
  : S extends IntSpec ? number
  : S extends BoolSpec ? boolean
  : S extends StringsSpec ? string[]
  : S extends StringSpec ? string
  : never;

// ---- builders --------------------------------------------------------------

type Extra = { live?: boolean; secret?: boolean };
export const section = <F extends FieldSpecs>(doc: string, fields: F, extra: Extra & { renamed?: Record<string, keyof F & string> } = {}): SectionSpec<F> =>
  ({ kind: 'section', doc, fields, ...extra });
export const str = (def: string, doc: string, check?: StringSpec['check'], extra: Extra = {}): StringSpec =>
  ({ kind: 'string', default: def, doc, check, ...extra });
export const int = (def: number, doc: string, min: number, max = Number.MAX_SAFE_INTEGER, extra: Extra = {}): IntSpec =>
  ({ kind: 'int', default: def, doc, min, max, ...extra });
export const bool = (def: boolean, doc: string, extra: Extra = {}): BoolSpec => ({ kind: 'bool', default: def, doc, ...extra });
export const oneOf = <const V extends string>(def: NoInfer<V>, values: readonly V[], doc: string, extra: Extra = {}): EnumSpec<V> =>
  ({ kind: 'enum', default: def, values, doc, ...extra });
export const strings = (def: string[], doc: string, check?: StringsSpec['check'], extra: Extra = {}): StringsSpec =>
  ({ kind: 'strings', default: def, doc, check, ...extra });
export const mapOf = <E extends SectionSpec>(doc: string, entry: E, def: MapSpec['default'], extra: Extra & { example?: MapSpec['example'] } = {}): MapSpec<E> =>
  ({ kind: 'map', doc, entry, default: def, ...extra });

// ---- errors ----------------------------------------------------------------

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** "config: <source>: <key>: <problem>" — every message names where the bad value came from. */
function fail(source: string, path: string, problem: string): never {
  throw new ConfigError(`config: ${source}: ${path ? `${path}: ` : ''}${problem}`);
}

// ---- defaults and overlay --------------------------------------------------

type Table = Record<string, unknown>;

function defaultsTable(spec: SectionSpec): Table {
  const out: Table = {};
  for (const [key, field] of Object.entries(spec.fields)) {
    if (field.kind === 'section') out[key] = defaultsTable(field);
    else if (field.kind === 'map') {
      const entries: Table = {};
      for (const [name, values] of Object.entries(field.default)) entries[name] = { ...defaultsTable(field.entry), ...structuredClone(values) };
      out[key] = entries;
    } else out[key] = Array.isArray(field.default) ? [...field.default] : field.default;
  }
  return out;
}

/** The schema's defaults, typed as the config they make. */
export function defaultsOf<S extends SectionSpec>(spec: S): ConfigOf<S> {
  // Sound by construction: defaultsTable walks exactly the fields ConfigOf maps.
  return defaultsTable(spec) as ConfigOf<S>;
}

function checkValue(source: string, path: string, spec: ValueSpec, value: unknown): ConfigValue {
  const bad = (what: string): never => fail(source, path, `${what}, got ${JSON.stringify(typeof value === 'bigint' ? Number(value) : value)}`);
  switch (spec.kind) {
    case 'string': {
      if (typeof value !== 'string') return bad('expected a string');
      const problem = spec.check?.(value);
      return problem ? bad(problem) : value;
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) return bad(`expected one of ${spec.values.join(', ')}`);
      return value;
    case 'bool':
      return typeof value === 'boolean' ? value : bad('expected true or false');
    case 'int': {
      const n = typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) return bad('expected an integer');
      if (n < spec.min || n > spec.max) return bad(`expected an integer from ${spec.min} to ${spec.max}`);
      return n;
    }
    case 'strings': {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) return bad('expected a list of strings');
      for (const item of value as string[]) {
        const problem = spec.check?.(item);
        if (problem) fail(source, path, `${JSON.stringify(item)} ${problem}`);
      }
      return [...(value as string[])];
    }
  }
}

export function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Where each leaf value came from ("default", a file path, "--set"), by dotted key. */
export type ConfigOrigins = Map<string, string>;

export interface OverlayContext {
  /** Named in every error and in origins. */
  source: string;
  origins: ConfigOrigins;
  /** Deprecated keys seen, as readable lines naming the source. */
  warnings: string[];
}

/** Overlays one file's table on `target`, checking every key against the schema; tables merge, lists and scalars replace. */
export function overlayTable(spec: SectionSpec, target: Table, input: Table, prefix: string, ctx: OverlayContext): void {
  const renamed = spec.renamed ?? {};
  for (const [oldKey, newKey] of Object.entries(renamed)) {
    if (oldKey in input && newKey in input) {
      fail(ctx.source, dotted(prefix, oldKey), `deprecated name of ${dotted(prefix, newKey)}, which is set too: keep only ${dotted(prefix, newKey)}`);
    }
  }
  for (const [rawKey, value] of Object.entries(input)) {
    let key = rawKey;
    if (renamed[rawKey]) {
      key = renamed[rawKey];
      ctx.warnings.push(`${ctx.source}: ${dotted(prefix, rawKey)} is deprecated; call it ${dotted(prefix, key)}`);
    }
    const path = dotted(prefix, key);
    const field = spec.fields[key];
    if (!field) fail(ctx.source, '', `unknown key "${path}" (known here: ${Object.keys(spec.fields).join(', ')})`);
    if (field.kind === 'section') {
      if (!isTable(value)) fail(ctx.source, path, `expected a table, got ${JSON.stringify(value)}`);
      overlayTable(field, target[key] as Table, value, path, ctx);
    } else if (field.kind === 'map') {
      if (!isTable(value)) fail(ctx.source, path, `expected a table, got ${JSON.stringify(value)}`);
      const entries = target[key] as Record<string, Table>;
      for (const [name, entryValue] of Object.entries(value)) {
        const entryPath = `${path}.${JSON.stringify(name)}`;
        if (!isTable(entryValue)) fail(ctx.source, entryPath, `expected a table, got ${JSON.stringify(entryValue)}`);
        entries[name] ??= defaultsTable(field.entry);
        overlayTable(field.entry, entries[name], entryValue, entryPath, ctx);
      }
    } else {
      target[key] = checkValue(ctx.source, path, field, value);
      ctx.origins.set(path, ctx.source);
    }
  }
}

/** Overlays `input` on a config of `spec`'s shape, returning the same (typed) object. */
export function overlayConfig<S extends SectionSpec>(spec: S, target: ConfigOf<S>, input: Table, ctx: OverlayContext): ConfigOf<S> {
  overlayTable(spec, target, input, '', ctx);
  return target;
}

function dotted(prefix: string, key: string): string {
  const part = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return prefix ? `${prefix}.${part}` : part;
}

/** "a.b.c" = value as nested tables (a flag's key). */
export function nestDotted(path: string, value: unknown): Table {
  const parts = path.split('.');
  const root: Table = {};
  let cursor = root;
  for (const part of parts.slice(0, -1)) {
    const next: Table = {};
    cursor[part] = next;
    cursor = next;
  }
  cursor[parts[parts.length - 1]] = value;
  return root;
}

export interface ConfigLeaf {
  key: string;
  value: ConfigValue;
  live: boolean;
  secret: boolean;
}

/** Every leaf of a config, in schema order. */
export function leavesOf(spec: SectionSpec, config: object, prefix = '', live = false): ConfigLeaf[] {
  const out: ConfigLeaf[] = [];
  const table = config as Table;
  for (const [key, field] of Object.entries(spec.fields)) {
    const path = dotted(prefix, key);
    const isLive = live || field.live === true;
    if (field.kind === 'section') out.push(...leavesOf(field, table[key] as Table, path, isLive));
    else if (field.kind === 'map') {
      for (const [name, entry] of Object.entries(table[key] as Record<string, Table>)) {
        out.push(...leavesOf(field.entry, entry, `${path}.${JSON.stringify(name)}`, isLive));
      }
    } else out.push({ key: path, value: table[key] as ConfigValue, live: isLive, secret: field.secret === true });
  }
  return out;
}

export const REDACTED = 'REDACTED';

/** A set secret as printed: REDACTED (an empty one stays empty, so "not set" still shows). */
export function shownValue(leaf: Pick<ConfigLeaf, 'value' | 'secret'>): ConfigValue {
  return leaf.secret && leaf.value !== '' ? REDACTED : leaf.value;
}

/** A deep copy of a config with its secrets REDACTED, for Status(verbose) and logs. */
export function redactedCopy<S extends SectionSpec>(spec: S, config: ConfigOf<S>): ConfigOf<S> {
  const walk = (section: SectionSpec, table: Table): Table => {
    const out: Table = {};
    for (const [key, value] of Object.entries(table)) {
      const field = section.fields[key];
      if (field?.kind === 'section') out[key] = walk(field, value as Table);
      else if (field?.kind === 'map') out[key] = Object.fromEntries(Object.entries(value as Record<string, Table>).map(([n, e]) => [n, walk(field.entry, e)]));
      else out[key] = field?.secret && value !== '' ? REDACTED : structuredClone(value);
    }
    return out;
  };
  // Same shape as the input by construction: only secret leaves change, to a string.
  return walk(spec, config) as ConfigOf<S>;
}
