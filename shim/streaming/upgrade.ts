// The HTTP/1.1 side of the streaming protocols: which transport a request asks
// for, X-Stream-Protocol-Version negotiation (SPDY), the WebSocket opening
// handshake, and raw responses on a socket that was handed over for upgrade.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { offeredSubprotocols, websocketAcceptKey } from './websocket';

export const STREAM_PROTOCOL_HEADER = 'x-stream-protocol-version';
export const ACCEPTED_PROTOCOLS_HEADER = 'X-Accepted-Stream-Protocol-Versions';

function headerTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
}

export function isWebSocketRequest(req: IncomingMessage): boolean {
  const connection = headerTokens(req.headers.connection).map((t) => t.toLowerCase());
  return connection.includes('upgrade') && (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

export function isSpdyRequest(req: IncomingMessage): boolean {
  const connection = headerTokens(req.headers.connection).map((t) => t.toLowerCase());
  return connection.includes('upgrade') && (req.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1';
}

/** Writes a complete HTTP response on a raw socket and closes it. */
export function rejectUpgrade(socket: Duplex, status: number, reason: string, body: string, headers: Record<string, string> = {}): void {
  const lines = [`HTTP/1.1 ${status} ${reason}`, 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

export type Negotiation = { ok: true; protocol: string } | { ok: false };

/**
 * Picks the first protocol the client lists that the server supports, as
 * apimachinery's httpstream.Handshake does; a client listing none gets "" (the
 * caller decides what that means). A mismatch is answered 403 here.
 */
export function negotiateStreamProtocol(req: IncomingMessage, socket: Duplex, supported: readonly string[]): Negotiation {
  const offered = headerTokens(req.headers[STREAM_PROTOCOL_HEADER]);
  if (offered.length === 0) return { ok: true, protocol: '' };
  const chosen = offered.find((p) => supported.includes(p));
  if (chosen === undefined) {
    rejectUpgrade(
      socket,
      403,
      'Forbidden',
      `unable to upgrade: unable to negotiate protocol: client supports ${JSON.stringify(offered)}, server supports ${JSON.stringify(supported)}\n`,
      { [ACCEPTED_PROTOCOLS_HEADER]: supported.join(', ') },
    );
    return { ok: false };
  }
  return { ok: true, protocol: chosen };
}

/** Completes the SPDY/3.1 upgrade: 101 with the negotiated protocol. */
export function acceptSpdyUpgrade(socket: Duplex, protocol: string): void {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', 'Upgrade: SPDY/3.1'];
  if (protocol) lines.push(`X-Stream-Protocol-Version: ${protocol}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
}

/**
 * Validates the WebSocket opening handshake and answers 101 with the chosen
 * subprotocol (the first the client offers that the server supports, "" when
 * the client offers none). Answers 400 and returns undefined when it fails.
 */
export function acceptWebSocketUpgrade(req: IncomingMessage, socket: Duplex, supported: readonly string[]): string | undefined {
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  if (req.method !== 'GET' || typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16) {
    rejectUpgrade(socket, 400, 'Bad Request', 'not a valid WebSocket handshake\n');
    return undefined;
  }
  if (version !== '13') {
    rejectUpgrade(socket, 426, 'Upgrade Required', 'only WebSocket version 13 is supported\n', { 'Sec-WebSocket-Version': '13' });
    return undefined;
  }
  const offered = offeredSubprotocols(req.headers['sec-websocket-protocol']);
  let protocol = '';
  if (offered.length > 0) {
    const chosen = offered.find((p) => supported.includes(p));
    if (chosen === undefined) {
      rejectUpgrade(socket, 400, 'Bad Request', `requested protocol(s) are not supported: ${JSON.stringify(offered)}; supports ${JSON.stringify(supported)}\n`);
      return undefined;
    }
    protocol = chosen;
  }
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${websocketAcceptKey(key)}`];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  return protocol;
}
