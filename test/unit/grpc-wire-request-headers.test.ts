// The request checks of RFC 9113 8.2-8.3 (shim/grpc-wire/http2/request-headers.ts),
// also after a name was seen well-formed before (the checks keep known names).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { malformedRequest } from '../../shim/grpc-wire/http2/request-headers';

function check(fields: Array<[string, string]>): string | undefined {
  const headers: Record<string, string> = Object.create(null);
  for (const [name, value] of fields) headers[name] = value;
  return malformedRequest(headers, fields.map(([name]) => name));
}

const PSEUDO: Array<[string, string]> = [[':method', 'POST'], [':scheme', 'http'], [':path', '/a.B/C']];

test('a well-formed request passes, again and again', () => {
  for (let i = 0; i < 3; i++) assert.equal(check([...PSEUDO, ['te', 'trailers'], ['content-type', 'application/grpc'], ['user-agent', 'x']]), undefined);
});

test('names known from earlier requests do not hide what is wrong in a later one', () => {
  assert.equal(check([...PSEUDO, ['te', 'trailers'], ['content-type', 'application/grpc']]), undefined);
  assert.match(check([...PSEUDO, ['te', 'gzip']]) ?? '', /te other than "trailers"/);
  assert.match(check([...PSEUDO, ['content-type', 'application/grpc'], [':authority', 'x']]) ?? '', /after a regular header/);
  assert.match(check([['content-type', 'application/grpc'], ...PSEUDO]) ?? '', /after a regular header/);
  assert.match(check([...PSEUDO, ['Content-Type', 'application/grpc']]) ?? '', /not lowercase/);
  assert.match(check([...PSEUDO, [':Path', '/x']]) ?? '', /not lowercase/);
  assert.match(check([...PSEUDO, [':status', '200']]) ?? '', /not a request pseudo-header/);
  assert.match(check([...PSEUDO, ['connection', 'close']]) ?? '', /connection-specific/);
  assert.match(check([...PSEUDO, ['', 'x']]) ?? '', /empty header name/);
  assert.match(check([...PSEUDO, [':path', '/again']]) ?? '', /repeated/);
  assert.match(check([[':method', 'POST'], [':path', '/x'], ['content-type', 'application/grpc']]) ?? '', /no :scheme/);
});

test('many distinct names, more than are kept, are each checked right', () => {
  for (let i = 0; i < 600; i++) assert.equal(check([...PSEUDO, [`x-name-${i}`, 'v']]), undefined);
  assert.match(check([...PSEUDO, ['X-Name-1', 'v']]) ?? '', /not lowercase/);
});
