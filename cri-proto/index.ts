// Loader for the CRI runtime.v1 proto and re-exports of its generated types.
// api.proto is the source. `npm run build` parses it once into
// dist/cri-proto/api.json (protobufjs's JSON form, with the .proto's sha256:
// cri-proto/descriptor-build.ts); loading that and building the two services'
// gRPC definitions here takes berthd's start ~20 ms where parsing the .proto
// and proto-loader's descriptor of every message took ~65 ms. Without a
// current api.json (a tsc-only build, an edited .proto) the .proto is parsed.
// The definitions are what proto-loader would make for the services (same
// paths, same (de)serializers with the same options), without the message
// descriptors only reflection uses. berthd's server takes the definitions
// (criServiceDefinitions) and never loads grpc-js; clients (tests, bench)
// get grpc-js constructors (loadCriPackage).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs/light';
import type { ProtoGrpcType } from './generated/api';
import { installPrebuiltCodecs, type PrebuiltCodecsFile } from './prebuilt-codecs';

function resolveProtoPath(): string {
  // Running from TypeScript source (cri-proto/index.ts): api.proto sits next to us.
  const local = path.resolve(__dirname, 'api.proto');
  if (fs.existsSync(local)) return local;
  // Running from compiled output (dist/cri-proto/index.js): go back to the source tree.
  return path.resolve(__dirname, '..', '..', 'cri-proto', 'api.proto');
}

/** Absolute path of the CRI runtime.v1 proto file. */
export const criProtoPath: string = resolveProtoPath();

/** Where the build writes the parsed proto (beside the compiled loader). */
export const criDescriptorPath: string = path.join(__dirname, 'api.json');

/** proto-loader options; must match the flags used by `npm run build:proto`. */
export const criProtoLoaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** What the build writes to api.json. */
export interface CriDescriptorFile {
  protoSha256: string;
  root: protobuf.INamespace;
}

/** The CRI services as gRPC constructors (clients) carrying their definitions (`.service`, for servers). */
export interface CriPackage {
  runtime: { v1: Pick<ProtoGrpcType['runtime']['v1'], 'RuntimeService' | 'ImageService'> };
}

export function protoSha256(text: Buffer | string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** api.proto parsed as proto-loader parses it (field names as written). */
export function parseCriProto(): protobuf.Root {
  // The parser is only in the full build of protobufjs: loaded only when the build output cannot be used.
  const full = require('protobufjs') as typeof protobuf;
  const root = new full.Root();
  root.loadSync(criProtoPath, { keepCase: true });
  return root;
}

/** protobufjs's editions features resolution, which its Root.fromJSON runs before resolving every type. */
interface FeatureResolution {
  _edition?: string;
  _resolveFeaturesRecursive?(edition: string | undefined): unknown;
}

/**
 * The root of a parsed proto with its names and editions features resolved, not its types: protobufjs
 * resolves a message type, generating its constructor and codecs, when it is first encoded or decoded.
 * Root.fromJSON resolves all ~300 CRI messages (one generated constructor each: ~8 ms of berthd's
 * start); so a start resolves none and a call the few it uses, with the same features and so the same
 * bytes (test/unit/cri-proto.test.ts). Without the features step (another protobufjs), all of them.
 */
export function rootWithLazyTypes(json: protobuf.INamespace): protobuf.Root {
  const root = new protobuf.Root();
  if (json.options) root.setOptions(json.options);
  root.addJSON(json.nested ?? {});
  const features = root as unknown as FeatureResolution;
  if (typeof features._resolveFeaturesRecursive !== 'function') {
    root.resolveAll();
    return root;
  }
  features._resolveFeaturesRecursive(features._edition);
  return root;
}

/** Whether the build's codecs (prebuilt-codecs.ts) are used: berthd's serving line says. */
let codecsState = 'not loaded yet';

export function criCodecsState(): string {
  return codecsState;
}

/** The build's codecs of the messages put in place of protobufjs's generation, when the build wrote them for this .proto. */
function withPrebuiltCodecs(root: protobuf.Root, sha256: string): protobuf.Root {
  let file: PrebuiltCodecsFile;
  try {
    file = require('./api-codecs') as PrebuiltCodecsFile;
  } catch (err) {
    codecsState = `not used: ${(err as Error).message.split('\n')[0]}`;
    return root;
  }
  codecsState = installPrebuiltCodecs(root, file, sha256);
  return root;
}

function loadRoot(): protobuf.Root {
  const sha256 = protoSha256(fs.readFileSync(criProtoPath));
  try {
    const built = JSON.parse(fs.readFileSync(criDescriptorPath, 'utf8')) as CriDescriptorFile;
    if (built.protoSha256 === sha256) return withPrebuiltCodecs(rootWithLazyTypes(built.root), sha256);
  } catch {
    // no build output here
  }
  codecsState = 'not used: api.proto parsed (no current api.json)';
  return parseCriProto();
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    // protobufjs writes Buffers under Node (its BufferWriter): handed to grpc-js as they are.
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  const options = criProtoLoaderOptions as protobuf.IConversionOptions;
  return (bytes) => type.toObject(type.decode(bytes), options);
}

function serviceDefinition(service: protobuf.Service): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  const serviceName = service.fullName.replace(/^\./, '');
  for (const method of service.methodsArray) {
    method.resolve();
    const request = method.resolvedRequestType;
    const response = method.resolvedResponseType;
    if (!request || !response) throw new Error(`${serviceName}.${method.name}: unresolved message types`);
    definition[method.name] = {
      path: `/${serviceName}/${method.name}`,
      requestStream: Boolean(method.requestStream),
      responseStream: Boolean(method.responseStream),
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  return definition;
}

/** The two CRI services' method definitions, by service name. */
export interface CriServiceDefinitions {
  RuntimeService: grpc.ServiceDefinition;
  ImageService: grpc.ServiceDefinition;
}

let definitions: CriServiceDefinitions | undefined;
let clients: CriPackage | undefined;

/** The CRI services' definitions, for a server (cached). */
export function criServiceDefinitions(): CriServiceDefinitions {
  if (!definitions) {
    const root = loadRoot();
    definitions = {
      RuntimeService: serviceDefinition(root.lookupService('runtime.v1.RuntimeService')),
      ImageService: serviceDefinition(root.lookupService('runtime.v1.ImageService')),
    };
  }
  return definitions;
}

/** The CRI services as grpc-js client constructors, each with its definition as `.service` (cached). */
export function loadCriPackage(): CriPackage {
  if (!clients) {
    // grpc-js is a client's dependency here: berthd's server does without it.
    const { makeClientConstructor } = require('@grpc/grpc-js') as typeof grpc;
    const services = criServiceDefinitions();
    const constructorOf = (name: keyof CriServiceDefinitions): unknown => makeClientConstructor(services[name], `runtime.v1.${name}`);
    clients = { runtime: { v1: { RuntimeService: constructorOf('RuntimeService'), ImageService: constructorOf('ImageService') } } } as CriPackage;
  }
  return clients;
}

export type { ProtoGrpcType } from './generated/api';
export type {
  RuntimeServiceClient,
  RuntimeServiceHandlers,
  RuntimeServiceDefinition,
} from './generated/runtime/v1/RuntimeService';
export type {
  ImageServiceClient,
  ImageServiceHandlers,
  ImageServiceDefinition,
} from './generated/runtime/v1/ImageService';
