// The checks RFC 9113 section 8.2 and 8.3 ask of a request's header list
// before it is processed: lowercase names, pseudo-headers known, not
// repeated and before every regular field, the three a request must carry,
// no connection-specific fields. A request that fails them is malformed:
// the stream is reset (PROTOCOL_ERROR), the connection goes on.
import type { HeaderList } from './hpack-decoder';

const REQUEST_PSEUDO = new Map([[':method', 1], [':scheme', 2], [':path', 4], [':authority', 8]]);
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const UPPERCASE = /[A-Z]/;

/** Why the request's header list is malformed, or undefined when it is well-formed. */
export function malformedRequest(headers: HeaderList, names: readonly string[]): string | undefined {
  let regularSeen = false;
  let pseudoSeen = 0;
  // Indexed loops: before V8 optimizes this, for...of costs an iterator and a result object per name.
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (name.length === 0) return 'an empty header name';
    if (UPPERCASE.test(name)) return `header name "${name}" is not lowercase`;
    if (name.charCodeAt(0) === 0x3a) {
      if (regularSeen) return `pseudo-header ${name} after a regular header`;
      const bit = REQUEST_PSEUDO.get(name);
      if (bit === undefined) return `pseudo-header ${name} is not a request pseudo-header`;
      if (pseudoSeen & bit) return `pseudo-header ${name} is repeated`;
      pseudoSeen |= bit;
      continue;
    }
    regularSeen = true;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header "${name}"`;
    if (name === 'te' && headers.te !== 'trailers') return 'te other than "trailers"';
  }
  if (headers[':method'] === 'CONNECT') return headers[':path'] === undefined && headers[':scheme'] === undefined ? undefined : 'CONNECT with :path or :scheme';
  if (!headers[':method']) return 'no :method';
  if (!headers[':scheme']) return 'no :scheme';
  if (!headers[':path']) return 'no :path';
  return undefined;
}
