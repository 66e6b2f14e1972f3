// Random CRI requests for the fuzz test (test/integration/cri-fuzz.test.ts) and
// its longer run (bench/fuzz.sh): messages built from api.proto's own
// descriptors with a seeded generator, so a failure replays from its seed.
// Values lean to what breaks servers (empty, huge, "..", NUL, absolute paths,
// out-of-range int64, unknown enum numbers, ids of real objects), but never
// point berthd at the host: host paths stay under the fuzz's scratch dir or
// do not exist, and image names only ever name registries on 127.0.0.1 (no
// lookup of a real registry name may happen in tests).
import * as protoLoader from '@grpc/proto-loader';
import { criProtoLoaderOptions, criProtoPath } from '../../cri-proto';

type Descriptor = {
  field: { name: string; label: string; type: string; typeName: string }[];
  nestedType?: { name: string; field: { name: string; type: string; typeName: string }[]; options?: { mapEntry?: boolean } | null }[];
  enumType?: { name: string; value: { name: string; number: number }[] }[];
};

const PACKAGE = 'runtime.v1';

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export class FuzzRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

export interface FuzzContext {
  random: FuzzRandom;
  /** Scratch directory host paths may name. */
  scratch: string;
  /** Top-level cgroup name cgroup parents may use (removed by the fuzz afterwards). */
  cgroupPrefix: string;
  /** "127.0.0.1:<port>" registries image names may name. */
  registries: string[];
  /** Images present in berthd (references), pods and containers seen in answers: requests reuse them. */
  images: string[];
  podIds: string[];
  containerIds: string[];
}

const NASTY = ['', 'a', '.', '..', '../..', '../../../etc/passwd', '/', '/etc/shadow', '\u0000', 'a\u0000b', '\n', ' ', '☃', '%s%n%x', '${jndi:ldap://x}', '-', '--help', '*', 'x'.repeat(300), 'A'.repeat(70_000)];
const INT64 = ['0', '1', '-1', '9223372036854775807', '-9223372036854775808', '2147483648', '4294967296', '1e3', 'NaN', '', '00', '-0', '18446744073709551616'];

function isPathField(name: string): boolean {
  return /path|dir|directory|mount_point|working_dir|cgroup_parent/.test(name);
}

export class CriMessageFuzzer {
  private readonly defs = protoLoader.loadSync(criProtoPath, criProtoLoaderOptions);

  /** A message or enum type by the name a field gives (nested ones are declared inside their message). */
  private lookup<T>(typeName: string): T {
    const key = `${PACKAGE}.${typeName}` in this.defs ? `${PACKAGE}.${typeName}` : Object.keys(this.defs).find((k) => k.endsWith(`.${typeName}`));
    if (!key) throw new Error(`no type ${typeName} in api.proto`);
    return (this.defs[key] as unknown as { type: T }).type;
  }

  /** Every RPC of both services: [service, method]. */
  methods(): { service: 'RuntimeService' | 'ImageService'; name: string; serverStream: boolean; requestType: string }[] {
    const out: { service: 'RuntimeService' | 'ImageService'; name: string; serverStream: boolean; requestType: string }[] = [];
    for (const service of ['RuntimeService', 'ImageService'] as const) {
      const svc = this.defs[`${PACKAGE}.${service}`] as unknown as Record<string, { responseStream: boolean; requestType: { type: { name: string } } }>;
      for (const [name, m] of Object.entries(svc)) out.push({ service, name, serverStream: m.responseStream, requestType: m.requestType.type.name });
    }
    return out;
  }

  /** A random request of `typeName` (a message of runtime.v1). */
  message(ctx: FuzzContext, typeName: string, depth = 0): Record<string, unknown> {
    const type = this.lookup<Descriptor>(typeName);
    const out: Record<string, unknown> = {};
    for (const field of type.field) {
      // Most fields absent: a realistic request sets a few.
      if (!ctx.random.chance(depth === 0 ? 0.8 : 0.45)) continue;
      const entry = type.nestedType?.find((n) => n.name === field.typeName && n.options?.mapEntry);
      if (entry) {
        const map: Record<string, unknown> = {};
        for (let i = ctx.random.int(4); i > 0; i--) map[this.stringFor(ctx, 'key')] = this.scalar(ctx, entry.field[1].type, entry.field[1].typeName, 'value', depth, type);
        out[field.name] = map;
      } else if (field.label === 'LABEL_REPEATED') {
        out[field.name] = Array.from({ length: ctx.random.int(4) }, () => this.scalar(ctx, field.type, field.typeName, field.name, depth, type));
      } else {
        out[field.name] = this.scalar(ctx, field.type, field.typeName, field.name, depth, type);
      }
    }
    return out;
  }

  /**
   * A near-valid request: `template` (a request that would succeed) with some
   * of its fields, at any depth, replaced by random values or dropped, so the
   * fuzz reaches past validation into the code that acts on the host.
   */
  mutated(ctx: FuzzContext, typeName: string, template: Record<string, unknown>, rate = 0.2): Record<string, unknown> {
    const random = this.message(ctx, typeName);
    const type = this.lookup<Descriptor>(typeName);
    const out: Record<string, unknown> = {};
    for (const field of type.field) {
      const kept = template[field.name];
      if (kept === undefined) {
        if (ctx.random.chance(rate / 2) && random[field.name] !== undefined) out[field.name] = random[field.name];
        continue;
      }
      const isMessage = field.type === 'TYPE_MESSAGE' && field.label !== 'LABEL_REPEATED' && !type.nestedType?.some((n) => n.name === field.typeName);
      if (isMessage && kept && typeof kept === 'object' && !ctx.random.chance(rate / 2)) {
        out[field.name] = this.mutated(ctx, field.typeName, kept as Record<string, unknown>, rate);
      } else if (ctx.random.chance(rate)) {
        if (random[field.name] !== undefined) out[field.name] = random[field.name];
      } else {
        out[field.name] = kept;
      }
    }
    return out;
  }

  private scalar(ctx: FuzzContext, type: string, typeName: string, name: string, depth: number, parent: Descriptor): unknown {
    const r = ctx.random;
    switch (type) {
      case 'TYPE_MESSAGE':
        return depth > 5 ? {} : this.message(ctx, typeName, depth + 1);
      case 'TYPE_STRING':
        return this.stringFor(ctx, name);
      case 'TYPE_BOOL':
        return r.chance(0.5);
      case 'TYPE_BYTES':
        return r.bytes(r.int(64));
      case 'TYPE_ENUM': {
        const values = (parent.enumType?.find((e) => e.name === typeName) ?? this.lookup<{ value: { name: string; number: number }[] }>(typeName)).value;
        return r.chance(0.85) ? r.pick(values).name : r.pick([-1, 99, 2147483647]);
      }
      case 'TYPE_INT64':
      case 'TYPE_UINT64':
      case 'TYPE_SINT64':
        return r.chance(0.6) ? String(r.int(100_000) - 50) : r.pick(INT64.filter((v) => /^-?\d+$/.test(v)));
      case 'TYPE_INT32':
      case 'TYPE_UINT32':
        return r.pick([0, 1, -1, 7, 2147483647, r.int(70_000)]);
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return r.pick([0, -1, 1.5, 1e308]);
      default:
        return undefined;
    }
  }

  /** A string for a field, by what the field holds. */
  stringFor(ctx: FuzzContext, name: string): string {
    const r = ctx.random;
    if (/^(pod_sandbox_id|container_id|target_id|id)$/.test(name) && r.chance(0.6)) {
      const pool = name === 'pod_sandbox_id' ? ctx.podIds : name === 'id' ? [...ctx.podIds, ...ctx.containerIds] : ctx.containerIds;
      if (pool.length > 0) {
        const id = r.pick(pool);
        return r.chance(0.7) ? id : id.slice(0, 1 + r.int(12));
      }
    }
    if (name === 'image' || name === 'image_ref' || name === 'user_specified_image') {
      if (ctx.images.length > 0 && r.chance(0.5)) return r.pick(ctx.images);
      // Only ever a registry on 127.0.0.1: a name like "busybox" would be looked up as docker.io.
      return `${r.pick(ctx.registries)}/${r.pick(['', 'a', 'A/B', '../x', 'x:tag', 'x@sha256:00', 'x:' + 'y'.repeat(200), r.pick(NASTY)])}`;
    }
    if (name === 'timeout') {
      // Small or malformed: a huge grace period on a container that ignores SIGTERM is honoured (and would hold the fuzz's cleanup).
      return r.pick(['', '0', '1', '2', '-1', '-9223372036854775808', 'NaN', '1e3', ' 1', r.pick(NASTY)]);
    }
    if (name === 'cgroup_parent') {
      // A parent the caller names is never berth's to remove: only names the fuzz removes itself afterwards.
      return r.pick(['', `/${ctx.cgroupPrefix}/${r.pick(['a', 'b/c', '..', 'x.slice', '\u0000', 'x'.repeat(300)])}`, `${ctx.cgroupPrefix}.slice`, 'relative', '../x', '/..', '/a/../..']);
    }
    if (isPathField(name)) {
      return r.pick([
        `${ctx.scratch}/${r.pick(['a', 'b/c', '../escape', 'link/x', 'x/../../y', r.pick(NASTY)])}`,
        r.pick(['relative', '../up', 'c/0.log', './a/../b', '', '/nonexistent-berth-fuzz/x']),
        r.pick(NASTY),
      ]);
    }
    if (r.chance(0.3)) return r.pick(NASTY);
    const len = r.chance(0.9) ? r.int(16) : r.int(5000);
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(r.chance(0.95) ? 97 + r.int(26) : r.int(0x2fff));
    return s;
  }
}
