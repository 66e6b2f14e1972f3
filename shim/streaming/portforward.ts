// Port forwarding: portforward.k8s.io over SPDY (the client opens an error and
// a data stream per connection, paired by their requestid header, port in the
// port header) and the channel WebSocket form (ports from ?port= query
// parameters; channels 2i data and 2i+1 error, each opened with the port as
// 2 little-endian bytes).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger';
import { decodeChannelMessage, sendOnChannel } from './remotecommand';
import { headerValue } from './spdy-frames';
import { SpdySession, type SpdyStream } from './spdy-session';
import { acceptSpdyUpgrade, acceptWebSocketUpgrade, negotiateStreamProtocol, rejectUpgrade } from './upgrade';
import { CloseCode, WebSocketConnection, WebSocketTunnel, offeredSubprotocols } from './websocket';

export const SPDY_PORTFORWARD_PROTOCOLS = ['portforward.k8s.io'] as const;
export const WEBSOCKET_PORTFORWARD_PROTOCOLS = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'portforward.k8s.io'] as const;
/** portforward.k8s.io spoken as SPDY/3.1 inside a WebSocket's binary messages. */
export const SPDY_TUNNEL_PORTFORWARD_PROTOCOL = 'SPDY/3.1+portforward.k8s.io';

/** Opens the connection to the pod's port. */
export type PortConnector = (port: number) => Promise<Duplex>;

export interface PortForwardContext {
  log: Logger;
  streamCreationTimeoutMs: number;
}

export function parsePort(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,5}$/.test(value)) return undefined;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Copies both ways until both directions ended; resolves then, or with the first error. */
function splice(a: Duplex, b: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    let ended = 0;
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };
    const oneDone = (): void => {
      ended++;
      if (ended === 2) settle();
    };
    a.pipe(b, { end: true });
    b.pipe(a, { end: true });
    a.once('end', oneDone);
    b.once('end', oneDone);
    a.once('error', (e: Error) => settle(e));
    b.once('error', (e: Error) => settle(e));
    // A side that goes away without a clean end ends the forward too.
    a.once('close', () => settle());
    b.once('close', () => settle());
  });
}

// ---------------------------------------------------------------- SPDY

export function servePortForwardSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: PortForwardContext, connect: PortConnector): void {
  const negotiated = negotiateStreamProtocol(req, socket, SPDY_PORTFORWARD_PROTOCOLS);
  if (!negotiated.ok) return;
  acceptSpdyUpgrade(socket, negotiated.protocol);
  if (head.length > 0) socket.unshift(head);
  runSpdyPortForward(socket, ctx, connect);
}

/** Serves portforward.k8s.io on a SPDY/3.1 connection over transport (a TCP socket or a WebSocket tunnel). */
function runSpdyPortForward(transport: Duplex, ctx: PortForwardContext, connect: PortConnector): void {
  const session = new SpdySession(transport, 'server');
  const pairs = new Map<string, { data?: SpdyStream; error?: SpdyStream; timer: NodeJS.Timeout }>();
  const open = new Set<Duplex>();

  session.on('error', (err) => ctx.log.debug({ err: err.message }, 'SPDY protocol error'));
  session.on('close', () => {
    for (const pair of pairs.values()) clearTimeout(pair.timer);
    for (const conn of open) conn.destroy();
  });
  session.on('stream', (stream) => {
    const type = headerValue(stream.headers, 'streamtype');
    let requestId = headerValue(stream.headers, 'requestid');
    // Clients older than request ids open the error stream first and the data stream next.
    if (requestId === undefined) requestId = String(type === 'data' ? stream.id - 2 : stream.id);
    if (type !== 'data' && type !== 'error') {
      stream.resetStream();
      return;
    }
    let pair = pairs.get(requestId);
    if (!pair) {
      const id = requestId;
      const timer = setTimeout(() => {
        const p = pairs.get(id);
        pairs.delete(id);
        p?.data?.resetStream();
        p?.error?.resetStream();
      }, ctx.streamCreationTimeoutMs);
      timer.unref();
      pair = { timer };
      pairs.set(requestId, pair);
    }
    if (pair[type]) {
      stream.resetStream();
      return;
    }
    pair[type] = stream;
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      void forward(pair.data, pair.error);
    }
  });

  async function forward(data: SpdyStream, error: SpdyStream): Promise<void> {
    error.resume();
    const portHeader = headerValue(data.headers, 'port');
    const port = parsePort(portHeader);
    try {
      if (port === undefined) throw new Error(`invalid port header ${JSON.stringify(portHeader ?? '')}`);
      const conn = await connect(port);
      open.add(conn);
      try {
        await splice(data, conn);
      } finally {
        open.delete(conn);
        conn.destroy();
      }
    } catch (err) {
      const message = `error forwarding port ${portHeader ?? '?'}: ${(err as Error).message}`;
      ctx.log.debug({ port: portHeader, err: (err as Error).message }, 'port forward failed');
      if (!error.destroyed && !error.writableEnded) error.write(message);
    }
    if (!data.destroyed && !data.writableEnded) data.end();
    if (!error.destroyed && !error.writableEnded) error.end();
  }
}

// ---------------------------------------------------------------- WebSocket

export function servePortForwardWebSocket(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  defaultPorts: number[],
  ctx: PortForwardContext,
  connect: PortConnector,
): void {
  // client-go's WebSocket port-forward (kubectl/crictl --transport websocket)
  // tunnels the SPDY protocol through binary messages; ports come in SPDY headers.
  if (offeredSubprotocols(req.headers['sec-websocket-protocol']).includes(SPDY_TUNNEL_PORTFORWARD_PROTOCOL)) {
    const tunnelProtocol = acceptWebSocketUpgrade(req, socket, [SPDY_TUNNEL_PORTFORWARD_PROTOCOL]);
    if (tunnelProtocol === undefined) return;
    const tunnel = new WebSocketTunnel(new WebSocketConnection(socket, 'server', 16 * 1024 * 1024, head));
    tunnel.on('error', (err: Error) => ctx.log.debug({ err: err.message }, 'port-forward tunnel error'));
    runSpdyPortForward(tunnel, ctx, connect);
    return;
  }
  const url = new URL(req.url ?? '/', 'http://streaming');
  const queried = url.searchParams.getAll('port').flatMap((p) => p.split(','));
  const ports: number[] = [];
  for (const value of queried) {
    const port = parsePort(value);
    if (port === undefined) {
      rejectUpgrade(socket, 400, 'Bad Request', `unable to parse ${JSON.stringify(value)} as a port\n`);
      return;
    }
    ports.push(port);
  }
  if (ports.length === 0) ports.push(...defaultPorts);
  if (ports.length === 0) {
    rejectUpgrade(socket, 400, 'Bad Request', 'query parameter "port" is required\n');
    return;
  }
  const protocol = acceptWebSocketUpgrade(req, socket, WEBSOCKET_PORTFORWARD_PROTOCOLS);
  if (protocol === undefined) return;
  const ws = new WebSocketConnection(socket, 'server', 16 * 1024 * 1024, head);
  const base64 = protocol.includes('base64');
  const conns: (Duplex | undefined)[] = ports.map(() => undefined);
  const early: Buffer[][] = ports.map(() => []);

  ws.on('message', (message) => {
    const decoded = decodeChannelMessage(message, base64);
    if (!decoded || decoded.channel % 2 !== 0) return;
    const index = decoded.channel / 2;
    if (index >= ports.length) return;
    const conn = conns[index];
    if (conn) conn.write(decoded.data);
    else early[index].push(decoded.data);
  });
  ws.on('close', () => {
    for (const c of conns) c?.destroy();
  });

  void (async () => {
    for (let i = 0; i < ports.length; i++) {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16LE(ports[i]);
      await sendOnChannel(ws, 2 * i, prefix, base64).catch(() => undefined);
      await sendOnChannel(ws, 2 * i + 1, prefix, base64).catch(() => undefined);
    }
    await Promise.all(
      ports.map(async (port, i) => {
        try {
          const conn = await connect(port);
          if (!ws.isOpen) {
            conn.destroy();
            return;
          }
          conns[i] = conn;
          for (const b of early[i].splice(0)) conn.write(b);
          await new Promise<void>((resolve) => {
            conn.on('data', (chunk: Buffer) => {
              sendOnChannel(ws, 2 * i, chunk, base64).catch(() => conn.destroy());
            });
            conn.once('end', () => resolve());
            conn.once('close', () => resolve());
            conn.once('error', (err: Error) => {
              sendOnChannel(ws, 2 * i + 1, Buffer.from(`error forwarding port ${port}: ${err.message}`), base64).catch(() => undefined);
              resolve();
            });
          });
        } catch (err) {
          await sendOnChannel(ws, 2 * i + 1, Buffer.from(`error forwarding port ${port}: ${(err as Error).message}`), base64).catch(() => undefined);
        }
      }),
    );
    ws.close(CloseCode.NORMAL, '');
  })();
}
