// List answers the kubelet asks for every second (ListContainers,
// ListPodSandbox) encoded from per-item bytes kept between calls. Encoding
// a thousand containers through protobufjs took most of a list's time; an
// item changes rarely (a container's state, its image's name), and a
// repeated field is its items' encodings one after the other, so each item
// is encoded once per version and a list is a concatenation.
import type * as grpc from '@grpc/grpc-js';

const PRE_ENCODED = Symbol('pre-encoded response');

/** A response message already encoded: the service's serializer hands the bytes on as they are. */
export interface PreEncodedResponse {
  [PRE_ENCODED]: Buffer;
}

/** A response whose bytes are known already. */
export function preEncoded(bytes: Buffer): PreEncodedResponse {
  return { [PRE_ENCODED]: bytes };
}

/**
 * One answer kept encoded while `key` stays the same (compared part by part
 * with ===): the answers the kubelet asks for again and again (Status,
 * ListImages) are built and encoded once per change, not once per call.
 */
export class KeptAnswer {
  private key: readonly unknown[] = [];
  private kept?: PreEncodedResponse;

  constructor(private readonly serialize: (response: unknown) => Buffer) {}

  answer(key: readonly unknown[], build: () => unknown): PreEncodedResponse {
    if (!this.kept || !sameParts(key, this.key)) {
      this.kept = { [PRE_ENCODED]: this.serialize(build()) };
      this.key = key;
    }
    return this.kept;
  }
}

/** `a` and `b` hold the same parts (===), in order. */
function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The bytes of a response: a pre-encoded one as it is, any other through `serialize` (the method's own). */
export function responseBytes(value: unknown, serialize: (value: unknown) => Buffer): Buffer {
  return value !== null && typeof value === 'object' && PRE_ENCODED in value ? (value as PreEncodedResponse)[PRE_ENCODED] : serialize(value);
}

/** How a list's sources become items: what identifies each, what its encoding depends on, the item itself. */
export interface ListedItems<S, T> {
  key(source: S): string;
  /** Changes whenever anything in the encoded item does (compared with ===, as `detail`). */
  version(source: S): string;
  /** A second part of the version, compared apart: no string is built per item on every list. */
  detail?(source: S): string;
  item(source: S): T;
}

/**
 * Encodes `{ [field]: [item] }` responses (field 1, repeated) item by item
 * through `serialize` (the method's own response serializer), keeping each
 * item's bytes until its version changes, and the whole answer until one of
 * its items does (a relist of an unchanged node copies nothing).
 */
export class ListEncoder<S, T> {
  private readonly encoded = new Map<string, { version: string; detail: string | undefined; bytes: Buffer }>();
  private lastParts: Buffer[] = [];
  private lastAnswer: Buffer = Buffer.alloc(0);

  constructor(
    private readonly field: string,
    private readonly serialize: (response: unknown) => Buffer,
    private readonly describe: ListedItems<S, T>,
  ) {}

  /** `complete`: these are all the items there are (an unfiltered list): bytes of any other are let go. */
  encode(sources: readonly S[], complete: boolean): PreEncodedResponse {
    const { describe, encoded, lastParts } = this;
    const parts: Buffer[] = new Array<Buffer>(sources.length);
    let same = sources.length === lastParts.length;
    for (let i = 0; i < sources.length; i++) {
      parts[i] = this.itemBytes(sources[i]);
      if (same && lastParts[i] !== parts[i]) same = false;
    }
    if (complete && encoded.size > sources.length) {
      const present = new Set(sources.map((s) => describe.key(s)));
      for (const key of encoded.keys()) if (!present.has(key)) encoded.delete(key);
    }
    if (!same) {
      this.lastParts = parts;
      this.lastAnswer = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    }
    return { [PRE_ENCODED]: this.lastAnswer };
  }

  /**
   * Encodes the items of `sources` whose bytes are not kept (or are of another version) a slice at a time, the
   * event loop serving calls between slices, so that the next list of them copies bytes. berthd does this for the
   * lists a kubelet asks for right after a restart (its relist) while the kubelet's first calls are answered.
   */
  async prepare(sources: readonly S[], sliceSize = 16): Promise<void> {
    for (let at = 0; at < sources.length; at += sliceSize) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (let i = at; i < Math.min(at + sliceSize, sources.length); i++) this.itemBytes(sources[i]);
    }
  }

  /** One item's bytes: kept, or encoded and kept for its version. */
  private itemBytes(source: S): Buffer {
    const { describe, encoded } = this;
    const key = describe.key(source);
    const version = describe.version(source);
    const detail = describe.detail?.(source);
    let hit = encoded.get(key);
    if (!hit || hit.version !== version || hit.detail !== detail) {
      hit = { version, detail, bytes: this.serialize({ [this.field]: [describe.item(source)] }) };
      encoded.set(key, hit);
    }
    return hit.bytes;
  }
}

/** The response serializer of `method` in `definition`. */
export function responseSerializer(definition: grpc.ServiceDefinition, method: string): (response: unknown) => Buffer {
  const spec = definition[method];
  if (!spec) throw new Error(`no method ${method} in the service definition`);
  return (response) => spec.responseSerialize(response);
}

/**
 * Encodes `{ [field]: items }` a slice at a time, letting the event loop
 * serve other calls between slices: a stats answer for 110 pods encoded in
 * one go held every call that arrived with it (ImageFsInfo, Version).
 */
export async function encodeInSlices(field: string, serialize: (response: unknown) => Buffer, items: readonly unknown[], sliceSize = 16): Promise<PreEncodedResponse> {
  const parts: Buffer[] = [];
  for (let at = 0; at < items.length; at += sliceSize) {
    if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    parts.push(serialize({ [field]: items.slice(at, at + sliceSize) }));
  }
  return { [PRE_ENCODED]: Buffer.concat(parts) };
}
