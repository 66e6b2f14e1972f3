// Build step (`npm run build`, after descriptor-build.ts): writes the CRI
// messages' protobufjs codecs as source, dist/cri-proto/api-codecs.js
// (prebuilt-codecs.ts says why), from the same lazily resolved root berthd
// loads, so each function is the source protobufjs would generate at run
// time. Only the first calls' messages (CODEC_METHODS), and only the
// server's directions: requests are decoded and turned into objects,
// responses made from objects and encoded.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protobuf from 'protobufjs/light';
import { type CriDescriptorFile, criDescriptorPath, rootWithLazyTypes } from './index';
import { protobufjsVersion } from './prebuilt-codecs';

/** Where the build writes the codecs (beside the compiled loader, which requires it). */
export const criCodecsPath: string = join(__dirname, 'api-codecs.js');

/** Every message type reachable from the services' methods through `side` (a method's request or response type). */
function reachable(services: protobuf.Service[], side: (method: protobuf.Method) => protobuf.Type | null): Set<protobuf.Type> {
  const seen = new Set<protobuf.Type>();
  const visit = (type: protobuf.Type | protobuf.Enum | null): void => {
    if (!(type instanceof protobuf.Type) || seen.has(type)) return;
    seen.add(type);
    for (const field of type.fieldsArray) visit(field.resolve().resolvedType);
  };
  for (const service of services) {
    for (const method of service.methodsArray) {
      method.resolve();
      visit(side(method));
    }
  }
  return seen;
}

/**
 * The calls whose messages' codecs are written: what a kubelet asks right after a restart and then every second
 * or so (its runtime checks and relist, image GC's lists). Written for every RPC, the file was 315 KB: kept in
 * berthd's heap as bundle source and code cache, it cost each start more than the other calls' first generation.
 */
export const CODEC_METHODS: ReadonlySet<string> = new Set(['Version', 'Status', 'ListContainers', 'ListPodSandbox', 'ListImages', 'ImageFsInfo']);

/** The types whose codecs are written, with what each needs: decode + toObject (requests), fromObject + encode (responses). */
export function serverCodecTypes(root: protobuf.Root): Map<protobuf.Type, { request: boolean; response: boolean }> {
  const services = [root.lookupService('runtime.v1.RuntimeService'), root.lookupService('runtime.v1.ImageService')];
  const requests = reachable(services, (m) => (CODEC_METHODS.has(m.name) ? m.resolvedRequestType : null));
  const responses = reachable(services, (m) => (CODEC_METHODS.has(m.name) ? m.resolvedResponseType : null));
  const out = new Map<protobuf.Type, { request: boolean; response: boolean }>();
  const all = [...new Set([...requests, ...responses])].sort((a, b) => (a.fullName < b.fullName ? -1 : a.fullName > b.fullName ? 1 : 0));
  for (const type of all) {
    if (protobuf.wrappers[type.fullName]) continue;
    out.set(type, { request: requests.has(type), response: responses.has(type) });
  }
  return out;
}

/**
 * A generated function's source as written: protobufjs indents each line of its body by two spaces (its codegen
 * joins the body's one-line statements with a newline and two spaces), which the file does without.
 */
export function unindented(source: string): string {
  return source.replace(/\n {2}/g, '\n');
}

/** The codecs module's text for the types of `root` (built from api.json as berthd builds it). */
export function criCodecsSource(root: protobuf.Root, protoSha256: string): string {
  const lines = [
    '// Written by cri-proto/codecs-build.ts (npm run build): protobufjs\'s codecs of the CRI messages berthd serves. Not edited by hand.',
    "'use strict';",
    `exports.protoSha256 = ${JSON.stringify(protoSha256)};`,
    `exports.protobufjs = ${JSON.stringify(protobufjsVersion())};`,
    'exports.codecs = {',
  ];
  for (const [type, { request, response }] of serverCodecTypes(root)) {
    // As protobufjs's setup does before generating: every field resolved.
    for (const field of type.fieldsArray) field.resolve();
    const parts = [
      unindented(protobuf.Type.generateConstructor(type).toString()),
      response ? unindented(protobuf.encoder(type).toString()) : 'null',
      request ? unindented(protobuf.decoder(type).toString()) : 'null',
      response ? unindented(protobuf.converter.fromObject(type).toString()) : 'null',
      request ? unindented(protobuf.converter.toObject(type).toString()) : 'null',
    ];
    lines.push(`${JSON.stringify(type.fullName.slice(1))}: function (Writer, Reader, types, util) { return [\n${parts.join(',\n')}]; },`);
  }
  lines.push('};', '');
  return lines.join('\n');
}

export function writeCriCodecs(out = criCodecsPath): void {
  const built = JSON.parse(readFileSync(criDescriptorPath, 'utf8')) as CriDescriptorFile;
  writeFileSync(out, criCodecsSource(rootWithLazyTypes(built.root), built.protoSha256));
}

if (require.main === module) writeCriCodecs();
