// Build step (`npm run build`): parses cri-proto/api.proto once and writes it
// as protobufjs JSON, with the .proto's sha256, to dist/cri-proto/api.json,
// which berthd loads at start instead of parsing the .proto (index.ts). The
// .proto stays the source; api.json is a build output, never committed.
// Then the messages' codecs from it (codecs-build.ts: dist/cri-proto/api-codecs.js).
import { readFileSync, writeFileSync } from 'node:fs';
import { writeCriCodecs } from './codecs-build';
import { criDescriptorPath, type CriDescriptorFile, criProtoPath, parseCriProto, protoSha256 } from './index';

export function writeCriDescriptor(out = criDescriptorPath): void {
  const file: CriDescriptorFile = { protoSha256: protoSha256(readFileSync(criProtoPath)), root: parseCriProto().toJSON() };
  writeFileSync(out, `${JSON.stringify(file)}\n`);
}

if (require.main === module) {
  writeCriDescriptor();
  // The codecs are made from the api.json just written (codecs-build.ts).
  writeCriCodecs();
}
