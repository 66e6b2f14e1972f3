// Raw HTTP/1.1 upgrade requests for the streaming tests: sends the request on a
// plain TCP socket and splits the response head from what follows it.
import { connect, type Socket } from 'node:net';

export interface UpgradeResponse {
  status: number;
  headers: Record<string, string>;
  socket: Socket;
  /** Bytes after the response head (already protocol data when status is 101). */
  rest: Buffer;
}

export async function sendUpgradeRequest(url: string, headers: [string, string][]): Promise<UpgradeResponse> {
  const u = new URL(url);
  const socket = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, ...headers.map(([k, v]) => `${k}: ${v}`)];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.off('error', reject);
      socket.pause();
      const head = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(head[0].split(' ')[1]);
      const hdrs: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) hdrs[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status, headers: hdrs, socket, rest: buf.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', () => reject(new Error(`connection closed before a response: ${buf.toString('latin1')}`)));
  });
}

/** The rest of a non-101 response: the body until the server closes. */
export async function readBody(res: UpgradeResponse): Promise<string> {
  const chunks: Buffer[] = [res.rest];
  res.socket.on('data', (c: Buffer) => chunks.push(c));
  res.socket.resume();
  await new Promise((resolve) => res.socket.once('close', resolve));
  return Buffer.concat(chunks).toString('utf8');
}
