// Loader for the CRI runtime.v1 proto and re-exports of its generated types.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/api';

function resolveProtoPath(): string {
  // Running from TypeScript source (cri-proto/index.ts): api.proto sits next to us.
  const local = path.resolve(__dirname, 'api.proto');
  if (fs.existsSync(local)) return local;
  // Running from compiled output (dist/cri-proto/index.js): go back to the source tree.
  return path.resolve(__dirname, '..', '..', 'cri-proto', 'api.proto');
}

/** Absolute path of the CRI runtime.v1 proto file. */
export const criProtoPath: string = resolveProtoPath();

/** proto-loader options; must match the flags used by `npm run build:proto`. */
export const criProtoLoaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: ProtoGrpcType | undefined;

/** Loads api.proto and returns the typed gRPC package object (cached). */
export function loadCriPackage(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync(criProtoPath, criProtoLoaderOptions);
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
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
