// The tests' WebSocket client for the k8s channel protocols (what client-go's
// WebSocket executor does for crictl --transport websocket).
import { randomBytes } from 'node:crypto';
import { websocketAcceptKey, WebSocketConnection } from '../../shim/streaming/websocket';
import { readBody, sendUpgradeRequest } from './http-upgrade-client';

export type WsConnectResult =
  | { ok: true; ws: WebSocketConnection; protocol: string }
  | { ok: false; status: number; body: string };

export async function wsConnect(url: string, protocols: string[]): Promise<WsConnectResult> {
  const key = randomBytes(16).toString('base64');
  const headers: [string, string][] = [
    ['Connection', 'Upgrade'],
    ['Upgrade', 'websocket'],
    ['Sec-WebSocket-Version', '13'],
    ['Sec-WebSocket-Key', key],
  ];
  if (protocols.length > 0) headers.push(['Sec-WebSocket-Protocol', protocols.join(', ')]);
  const res = await sendUpgradeRequest(url, headers);
  if (res.status !== 101) return { ok: false, status: res.status, body: await readBody(res) };
  if (res.headers['sec-websocket-accept'] !== websocketAcceptKey(key)) throw new Error('bad Sec-WebSocket-Accept');
  const ws = new WebSocketConnection(res.socket, 'client', 64 * 1024 * 1024, res.rest);
  res.socket.resume();
  return { ok: true, ws, protocol: res.headers['sec-websocket-protocol'] ?? '' };
}

export interface ChannelSession {
  ws: WebSocketConnection;
  protocol: string;
  /** Data received per channel, in order (first byte stripped). */
  channels: Map<number, Buffer[]>;
  send(channel: number, data: Buffer | string): Promise<void>;
  /** Resolves when the server closed the connection: code and the bytes per channel. */
  closed: Promise<{ code: number; text: (channel: number) => string }>;
}

export async function wsChannelSession(url: string, protocols: string[]): Promise<ChannelSession> {
  const conn = await wsConnect(url, protocols);
  if (!conn.ok) throw new Error(`upgrade refused: ${conn.status} ${conn.body}`);
  const { ws, protocol } = conn;
  const base64 = protocol.includes('base64');
  const channels = new Map<number, Buffer[]>();
  ws.on('message', (m) => {
    if (m.data.length === 0) return;
    const channel = base64 && !m.binary ? m.data[0] - 48 : m.data[0];
    const data = base64 && !m.binary ? Buffer.from(m.data.subarray(1).toString('latin1'), 'base64') : m.data.subarray(1);
    const list = channels.get(channel) ?? [];
    list.push(Buffer.from(data));
    channels.set(channel, list);
  });
  const text = (channel: number): string => Buffer.concat(channels.get(channel) ?? []).toString('utf8');
  const closed = new Promise<{ code: number; text: (channel: number) => string }>((resolve) =>
    ws.once('close', (code) => {
      ws.close();
      resolve({ code, text });
    }),
  );
  const send = (channel: number, data: Buffer | string): Promise<void> => {
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    if (base64) return ws.send(Buffer.from(String.fromCharCode(48 + channel) + payload.toString('base64')), false);
    return ws.send(Buffer.concat([Buffer.from([channel]), payload]), true);
  };
  return { ws, protocol, channels, send, closed };
}
