// The checks RFC 9113 section 8.2 and 8.3 ask of a request's header list
// before it is processed: lowercase names, pseudo-headers known, not
// repeated and before every regular field, the three a request must carry,
// no connection-specific fields. A request that fails them is malformed:
// the stream is reset (PROTOCOL_ERROR), the connection goes on.
import type { HeaderList } from './hpack-decoder';

const REQUEST_PSEUDO = new Map([[':method', 1], [':scheme', 2], [':path', 4], [':authority', 8]]);
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const UPPERCASE = /[A-Z]/;
/**
 * Regular names that passed every check before (bounded: emptied when full): a client sends the same few on
 * every request, and a known one is one lookup instead of the checks.
 */
const GOOD_REGULAR = new Set<string>();
const GOOD_REGULAR_ENTRIES = 256;

/** Why the request's header list is malformed, or undefined when it is well-formed. */
export function malformedRequest(headers: HeaderList, names: readonly string[]): string | undefined {
  let regularSeen = false;
  let pseudoSeen = 0;
  // Indexed loops: before V8 optimizes this, for...of costs an iterator and a result object per name.
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (name.charCodeAt(0) === 0x3a) {
      const bit = REQUEST_PSEUDO.get(name);
      if (bit === undefined) return UPPERCASE.test(name) ? `header name "${name}" is not lowercase` : `pseudo-header ${name} is not a request pseudo-header`;
      if (regularSeen) return `pseudo-header ${name} after a regular header`;
      if (pseudoSeen & bit) return `pseudo-header ${name} is repeated`;
      pseudoSeen |= bit;
      continue;
    }
    regularSeen = true;
    if (GOOD_REGULAR.has(name)) continue;
    if (name.length === 0) return 'an empty header name';
    if (UPPERCASE.test(name)) return `header name "${name}" is not lowercase`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header "${name}"`;
    if (name === 'te') {
      if (headers.te !== 'trailers') return 'te other than "trailers"';
      continue;
    }
    if (GOOD_REGULAR.size >= GOOD_REGULAR_ENTRIES) GOOD_REGULAR.clear();
    GOOD_REGULAR.add(name);
  }
  if (headers[':method'] === 'CONNECT') return headers[':path'] === undefined && headers[':scheme'] === undefined ? undefined : 'CONNECT with :path or :scheme';
  if (!headers[':method']) return 'no :method';
  if (!headers[':scheme']) return 'no :scheme';
  if (!headers[':path']) return 'no :path';
  return undefined;
}
