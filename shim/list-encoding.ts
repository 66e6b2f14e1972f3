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

/** The bytes of a response: a pre-encoded one as it is, any other through `serialize` (the method's own). */
export function responseBytes(value: unknown, serialize: (value: unknown) => Buffer): Buffer {
  return value !== null && typeof value === 'object' && PRE_ENCODED in value ? (value as PreEncodedResponse)[PRE_ENCODED] : serialize(value);
}

export interface ListedItem<T> {
  key: string;
  /** Changes whenever anything in the encoded item does. */
  version: string;
  item: () => T;
}

/**
 * Encodes `{ [field]: [item] }` responses (field 1, repeated) item by item
 * through `serialize` (the method's own response serializer), keeping each
 * item's bytes until its version changes.
 */
export class ListEncoder<T> {
  private readonly encoded = new Map<string, { version: string; bytes: Buffer }>();

  constructor(
    private readonly field: string,
    private readonly serialize: (response: unknown) => Buffer,
  ) {}

  /** `complete`: these are all the items there are (an unfiltered list): bytes of any other are let go. */
  encode(items: readonly ListedItem<T>[], complete: boolean): PreEncodedResponse {
    const parts: Buffer[] = [];
    for (const { key, version, item } of items) {
      let hit = this.encoded.get(key);
      if (!hit || hit.version !== version) {
        hit = { version, bytes: this.serialize({ [this.field]: [item()] }) };
        this.encoded.set(key, hit);
      }
      parts.push(hit.bytes);
    }
    if (complete && this.encoded.size > items.length) {
      const present = new Set(items.map((i) => i.key));
      for (const key of this.encoded.keys()) if (!present.has(key)) this.encoded.delete(key);
    }
    return { [PRE_ENCODED]: parts.length === 1 ? parts[0] : Buffer.concat(parts) };
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
