// Round-trip and shape checks for the CRI runtime.v1 proto (cri-proto/api.proto).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as protobuf from 'protobufjs';
import { readFileSync } from 'node:fs';
import { criCodecsState, criDescriptorPath, criProtoLoaderOptions, criProtoPath, type CriDescriptorFile, loadCriPackage, rootWithLazyTypes } from '../../cri-proto';
import { criCodecsPath, serverCodecTypes, unindented } from '../../cri-proto/codecs-build';
import { installPrebuiltCodecs, type PrebuiltCodecsFile, protobufjsVersion } from '../../cri-proto/prebuilt-codecs';

const RUNTIME_RPCS = [
  'Version', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus',
  'ListPodSandbox', 'CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer',
  'ListContainers', 'ContainerStatus', 'UpdateContainerResources', 'ReopenContainerLog',
  'ExecSync', 'Exec', 'Attach', 'PortForward', 'ContainerStats', 'ListContainerStats',
  'PodSandboxStats', 'ListPodSandboxStats', 'UpdateRuntimeConfig', 'Status',
  'CheckpointContainer', 'GetContainerEvents', 'ListMetricDescriptors', 'ListPodSandboxMetrics',
  'RuntimeConfig', 'UpdatePodSandboxResources', 'StreamPodSandboxes', 'StreamContainers',
  'StreamContainerStats', 'StreamPodSandboxStats', 'StreamPodSandboxMetrics',
  'CheckpointPod', 'RestorePod',
];
const RUNTIME_STREAMING = [
  'GetContainerEvents', 'StreamPodSandboxes', 'StreamContainers', 'StreamContainerStats',
  'StreamPodSandboxStats', 'StreamPodSandboxMetrics',
];
const IMAGE_RPCS = ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo', 'StreamImages'];
const IMAGE_STREAMING = ['StreamImages'];

const MAX_DEPTH = 6;

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.loadSync(criProtoPath, { keepCase: true });
  root.resolveAll();
  return root;
}

function collectTypes(ns: protobuf.NamespaceBase, out: protobuf.Type[] = []): protobuf.Type[] {
  for (const n of ns.nestedArray) {
    if (n instanceof protobuf.Type) out.push(n);
    if (n instanceof protobuf.Namespace || n instanceof protobuf.Type) collectTypes(n, out);
  }
  return out;
}

// Non-default sample for a scalar of the given proto type. Values are in toObject()
// form: 64-bit ints as decimal strings, bytes as base64 strings.
function scalarSample(type: string, seed: number): unknown {
  switch (type) {
    case 'string': return `s${seed}`;
    case 'bool': return true;
    case 'bytes': return Buffer.from([1, 2, seed & 0xff]).toString('base64');
    case 'double': return seed + 0.25;
    case 'float': return seed + 0.5; // exactly representable in float32
    case 'int32': case 'sint32': case 'sfixed32': return -seed - 1;
    case 'uint32': case 'fixed32': return seed + 1;
    case 'int64': case 'sint64': case 'sfixed64': return String(-(seed + 1) * 10_000_000_000);
    case 'uint64': case 'fixed64': return String((seed + 1) * 10_000_000_000);
    default: throw new Error(`unknown scalar type ${type}`);
  }
}

function mapKeySample(keyType: string, i: number): string {
  if (keyType === 'string') return `k${i}`;
  if (keyType === 'bool') return i === 0 ? 'true' : 'false';
  return String(i + 1);
}

function valueSample(field: protobuf.Field, seed: number, depth: number): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    const names = Object.keys(rt.values).filter((n) => rt.values[n] !== 0);
    assert.ok(names.length > 0, `enum ${rt.fullName} has no non-zero value`);
    return names[seed % names.length];
  }
  if (rt instanceof protobuf.Type) return messageSample(rt, depth + 1);
  return scalarSample(field.type, seed);
}

function messageSample(type: protobuf.Type, depth: number): Record<string, unknown> {
  const obj: Record<string, unknown> = {};
  if (depth > MAX_DEPTH) return obj;
  for (const field of type.fieldsArray) {
    const seed = field.id;
    if (field instanceof protobuf.MapField) {
      const m: Record<string, unknown> = {};
      for (let i = 0; i < 2; i++) m[mapKeySample(field.keyType, i)] = valueSample(field, seed + i, depth);
      obj[field.name] = m;
    } else if (field.repeated) {
      obj[field.name] = [valueSample(field, seed, depth), valueSample(field, seed + 1, depth)];
    } else {
      obj[field.name] = valueSample(field, seed, depth);
    }
  }
  return obj;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String };

test('every runtime.v1 message round-trips with all fields set', () => {
  const root = loadRoot();
  const pkg = root.lookup('runtime.v1') as protobuf.Namespace;
  const types = collectTypes(pkg);
  assert.ok(types.length >= 170, `expected the full CRI message set, got ${types.length}`);
  for (const type of types) {
    const sample = messageSample(type, 0);
    const message = type.fromObject(sample);
    assert.equal(type.verify(message), null, `${type.fullName} sample does not verify`);
    const bytes = type.encode(message).finish();
    if (type.fieldsArray.length > 0) assert.ok(bytes.length > 0, `${type.fullName} encoded empty`);
    const decoded = type.decode(bytes);
    assert.deepEqual(type.toObject(decoded, TO_OBJECT), sample, `${type.fullName} round-trip mismatch`);
    // Re-encoding the decoded message must reproduce the same bytes.
    assert.deepEqual(Buffer.from(type.encode(decoded).finish()), Buffer.from(bytes), `${type.fullName} re-encode mismatch`);
  }
});

test('every runtime.v1 message has the same bytes and objects with its types resolved on first use (berthd) as with all resolved at once', () => {
  const full = loadRoot();
  const built = JSON.parse(readFileSync(criDescriptorPath, 'utf8')) as CriDescriptorFile;
  const lazy = rootWithLazyTypes(built.root);
  const options = criProtoLoaderOptions as protobuf.IConversionOptions;
  for (const type of collectTypes(full.lookup('runtime.v1') as protobuf.Namespace)) {
    const sample = messageSample(type, 0);
    const lazyType = lazy.lookupType(type.fullName);
    const bytes = Buffer.from(lazyType.encode(lazyType.fromObject(sample)).finish());
    assert.deepEqual(bytes, Buffer.from(type.encode(type.fromObject(sample)).finish()), `${type.fullName} encodes differently`);
    assert.deepEqual(lazyType.toObject(lazyType.decode(bytes), options), type.toObject(type.decode(bytes), options), `${type.fullName} decodes differently`);
  }
});

function checkService(root: protobuf.Root, name: string, rpcs: string[], streaming: string[]): void {
  const svc = root.lookupService(`runtime.v1.${name}`);
  assert.deepEqual(Object.keys(svc.methods).sort(), [...rpcs].sort(), `${name} RPC set`);
  for (const m of svc.methodsArray) {
    assert.equal(!!m.requestStream, false, `${name}.${m.name} must not be client-streaming`);
    assert.equal(!!m.responseStream, streaming.includes(m.name), `${name}.${m.name} server-streaming flag`);
  }
}

test('RuntimeService and ImageService expose the expected RPCs', () => {
  const root = loadRoot();
  assert.equal(RUNTIME_RPCS.length, 37);
  assert.equal(IMAGE_RPCS.length, 6);
  checkService(root, 'RuntimeService', RUNTIME_RPCS, RUNTIME_STREAMING);
  checkService(root, 'ImageService', IMAGE_RPCS, IMAGE_STREAMING);
});

test('loadCriPackage returns typed service definitions matching the proto', () => {
  const pkg = loadCriPackage();
  const v1 = pkg.runtime.v1;
  const check = (def: Record<string, { path: string; responseStream: boolean; requestStream: boolean }>,
    svc: string, rpcs: string[], streaming: string[]) => {
    const names = Object.keys(def).filter((k) => def[k].path === `/runtime.v1.${svc}/${k}`);
    assert.deepEqual(names.sort(), [...rpcs].sort());
    for (const n of rpcs) {
      assert.equal(def[n].requestStream, false);
      assert.equal(def[n].responseStream, streaming.includes(n), `${svc}.${n}`);
    }
  };
  check(v1.RuntimeService.service as never, 'RuntimeService', RUNTIME_RPCS, RUNTIME_STREAMING);
  check(v1.ImageService.service as never, 'ImageService', IMAGE_RPCS, IMAGE_STREAMING);
  assert.equal(typeof v1.RuntimeService, 'function');
  assert.equal(typeof v1.ImageService, 'function');
});

test('field numbers match upstream (spot checks)', () => {
  const root = loadRoot();
  const id = (msg: string, field: string): number => {
    const f = root.lookupType(`runtime.v1.${msg}`).fields[field];
    assert.ok(f, `${msg}.${field} missing`);
    return f.id;
  };
  assert.equal(id('PodSandboxConfig', 'metadata'), 1);
  assert.equal(id('PodSandboxConfig', 'linux'), 8);
  assert.equal(id('ContainerConfig', 'metadata'), 1);
  assert.equal(id('ContainerConfig', 'linux'), 15);
  assert.equal(id('LinuxContainerResources', 'memory_limit_in_bytes'), 4);
  assert.equal(id('ExecSyncRequest', 'timeout'), 3);
  assert.equal(id('PullImageRequest', 'sandbox_config'), 3);
  assert.equal(id('Mount', 'selinux_relabel'), 4);
  assert.equal(id('Mount', 'mount_options'), 11);
  assert.equal(id('RuntimeFeatures', 'mount_options'), 3);
  const ft = root.lookupType('runtime.v1.ExecSyncRequest').fields['timeout'];
  assert.equal(ft.type, 'int64');
});

// The build's codecs (cri-proto/prebuilt-codecs.ts, dist/cri-proto/api-codecs.js): the functions protobufjs would
// generate, written at build time for the server's directions.
const codecsFile = (): PrebuiltCodecsFile => require(criCodecsPath) as PrebuiltCodecsFile;
const builtDescriptor = (): CriDescriptorFile => JSON.parse(readFileSync(criDescriptorPath, 'utf8')) as CriDescriptorFile;

test('the build writes a codec for every message of a kubelet\'s first and polled calls the server decodes or encodes, each function the source protobufjs generates for it', () => {
  const built = builtDescriptor();
  const file = codecsFile();
  assert.equal(file.protoSha256, built.protoSha256);
  assert.equal(file.protobufjs, protobufjsVersion());
  const root = rootWithLazyTypes(built.root);
  const served = serverCodecTypes(root);
  for (const name of ['runtime.v1.VersionRequest', 'runtime.v1.StatusResponse', 'runtime.v1.ListContainersRequest', 'runtime.v1.Container', 'runtime.v1.PodSandbox', 'runtime.v1.Image', 'runtime.v1.FilesystemUsage']) {
    assert.ok(name in file.codecs, `${name} is written`);
  }
  assert.deepEqual(Object.keys(file.codecs).sort(), [...served.keys()].map((t) => t.fullName.slice(1)).sort());
  for (const [type, { request, response }] of served) {
    for (const field of type.fieldsArray) field.resolve();
    const written = file.codecs[type.fullName.slice(1)](protobuf.Writer, protobuf.Reader, [], protobuf.util);
    const expected = [
      protobuf.Type.generateConstructor(type),
      response ? protobuf.encoder(type) : null,
      request ? protobuf.decoder(type) : null,
      response ? protobuf.converter.fromObject(type) : null,
      request ? protobuf.converter.toObject(type) : null,
    ];
    expected.forEach((generated, i) => {
      const name = `${type.fullName} function ${i}`;
      if (generated === null) assert.equal(written[i], null, name);
      else assert.equal(written[i]?.toString(), unindented(generated.toString()), name);
    });
  }
});

test('with the build\'s codecs every message written has the same bytes and objects as with protobufjs\'s generated ones, both ways', () => {
  const full = loadRoot();
  const built = builtDescriptor();
  const file = codecsFile();
  const prebuilt = rootWithLazyTypes(built.root);
  assert.match(installPrebuiltCodecs(prebuilt, file, built.protoSha256), /^used \(\d+ types\)$/);
  const generated = rootWithLazyTypes(built.root);
  const options = criProtoLoaderOptions as protobuf.IConversionOptions;
  // What protobufjs generates while the prebuilt root is used: only what the build did not write.
  const made: string[] = [];
  const codegen = protobuf.util.codegen;
  const counting = function (this: unknown, ...args: unknown[]) {
    made.push(String(typeof args[0] === 'string' ? args[0] : args[1]));
    return (codegen as (...a: unknown[]) => unknown).apply(this, args);
  } as unknown as typeof codegen;
  const served = serverCodecTypes(prebuilt);
  for (const name of Object.keys(file.codecs)) {
    const [p, g] = [prebuilt.lookupType(name), generated.lookupType(name)];
    const sample = messageSample(full.lookupType(name), 0);
    // Encoded from an object (a response), then decoded into one (a request), each both ways.
    made.length = 0;
    protobuf.util.codegen = counting;
    let bytes: Buffer;
    try {
      bytes = Buffer.from(p.encode(p.fromObject(sample)).finish());
      p.toObject(p.decode(bytes), options);
    } finally {
      protobuf.util.codegen = codegen;
    }
    // Written: every served type's constructor, a response's encoder and fromObject, a request's decoder and toObject.
    const byName = new Map([...served].map(([type, sides]) => [type.name, sides]));
    const generatedWritten = made.filter((fn) => {
      const [typeName, suffix] = fn.split('$');
      const sides = byName.get(typeName);
      if (!sides || suffix === undefined) return Boolean(sides);
      return ['encode', 'fromObject'].includes(suffix) ? sides.response : ['decode', 'toObject'].includes(suffix) ? sides.request : false;
    });
    assert.deepEqual(generatedWritten, [], `${name}: protobufjs generated what the build wrote`);
    assert.deepEqual(bytes, Buffer.from(g.encode(g.fromObject(sample)).finish()), `${name} encodes differently`);
    assert.deepEqual(p.toObject(p.decode(bytes), options), g.toObject(g.decode(bytes), options), `${name} decodes differently`);
    assert.deepEqual(p.toObject(p.decode(Buffer.alloc(0)), options), g.toObject(g.decode(Buffer.alloc(0)), options), `${name}: empty message`);
    assert.equal(p.verify(p.fromObject(sample)), null, `${name} does not verify`);
  }
});

test('the server\'s definitions use the build\'s codecs, and an empty Status request decodes and a Status answer encodes as before', () => {
  const services = loadCriPackage().runtime.v1.RuntimeService.service as unknown as Record<string, { requestDeserialize(b: Buffer): unknown; responseSerialize(v: unknown): Buffer }>;
  assert.match(criCodecsState(), /^used \(\d+ types\)$/);
  const answer = { status: { conditions: [{ type: 'RuntimeReady', status: true, reason: '', message: '' }] }, info: { k: 'v' } };
  const bytes = services.Status.responseSerialize(answer);
  const plain = rootWithLazyTypes(builtDescriptor().root).lookupType('runtime.v1.StatusResponse');
  assert.deepEqual(bytes, Buffer.from(plain.encode(plain.fromObject(answer)).finish()));
  assert.deepEqual(services.Status.requestDeserialize(Buffer.alloc(0)), { verbose: false });
});

test('codecs written for another api.proto or another protobufjs are not used', () => {
  const built = builtDescriptor();
  const file = codecsFile();
  for (const [other, why] of [[{ ...file, protoSha256: '0'.repeat(64) }, /another api\.proto/], [{ ...file, protobufjs: '0.0.1' }, /protobufjs 0\.0\.1/]] as const) {
    const root = rootWithLazyTypes(built.root);
    assert.match(installPrebuiltCodecs(root, other, built.protoSha256), why);
    const type = root.lookupType('runtime.v1.StatusResponse');
    assert.equal(Object.prototype.hasOwnProperty.call(type, 'setup'), false);
    const sample = { status: { conditions: [{ type: 'RuntimeReady', status: true }] } };
    assert.deepEqual(type.toObject(type.decode(type.encode(type.fromObject(sample)).finish())), sample);
  }
});
