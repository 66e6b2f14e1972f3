// The tests' SPDY/3.1 client for the k8s streaming protocols, playing the part
// client-go plays for kubectl and crictl: upgrade, open the streams a
// remotecommand or portforward session needs, collect what comes back.
import type { Readable } from 'node:stream';
import { headersFrom } from '../../shim/streaming/spdy-frames';
import { SpdySession, type SpdyStream } from '../../shim/streaming/spdy-session';
import { readBody, sendUpgradeRequest } from './http-upgrade-client';

export type SpdyConnectResult =
  | { ok: true; session: SpdySession; protocol: string }
  | { ok: false; status: number; body: string };

export async function spdyConnect(url: string, protocols: string[]): Promise<SpdyConnectResult> {
  const res = await sendUpgradeRequest(url, [
    ['Connection', 'Upgrade'],
    ['Upgrade', 'SPDY/3.1'],
    ...protocols.map((p): [string, string] => ['X-Stream-Protocol-Version', p]),
  ]);
  if (res.status !== 101) return { ok: false, status: res.status, body: await readBody(res) };
  if (res.rest.length > 0) res.socket.unshift(res.rest);
  const session = new SpdySession(res.socket, 'client');
  res.socket.resume();
  return { ok: true, session, protocol: res.headers['x-stream-protocol-version'] ?? '' };
}

export function collect(stream: Readable | undefined): Promise<Buffer> {
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    const done = (): void => resolve(Buffer.concat(chunks));
    stream.once('end', done);
    stream.once('close', done);
  });
}

export interface RemoteCommandStreams {
  session: SpdySession;
  protocol: string;
  error: SpdyStream;
  stdin?: SpdyStream;
  stdout?: SpdyStream;
  stderr?: SpdyStream;
  resize?: SpdyStream;
  /** Resolves once stdout, stderr and the error stream have ended. */
  done: Promise<{ stdout: string; stderr: string; error: string }>;
}

export interface RemoteCommandOpen {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  protocols?: string[];
}

/** Opens an exec/attach session as client-go does: error first, then stdin, stdout, stderr, resize. */
export async function spdyRemoteCommand(url: string, opts: RemoteCommandOpen): Promise<RemoteCommandStreams> {
  const conn = await spdyConnect(url, opts.protocols ?? ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']);
  if (!conn.ok) throw new Error(`upgrade refused: ${conn.status} ${conn.body}`);
  const { session, protocol } = conn;
  const open = (type: string): SpdyStream => session.openStream(headersFrom({ streamType: type }));
  const error = open('error');
  error.end();
  const stdin = opts.stdin ? open('stdin') : undefined;
  const stdout = opts.stdout ? open('stdout') : undefined;
  if (stdout) stdout.end();
  const stderr = opts.stderr && !opts.tty ? open('stderr') : undefined;
  if (stderr) stderr.end();
  const resize = opts.tty && (protocol === 'v4.channel.k8s.io' || protocol === 'v3.channel.k8s.io') ? open('resize') : undefined;
  const done = Promise.all([collect(stdout), collect(stderr), collect(error)]).then(([o, e, r]) => ({
    stdout: o.toString('utf8'),
    stderr: e.toString('utf8'),
    error: r.toString('utf8'),
  }));
  return { session, protocol, error, stdin, stdout, stderr, resize, done };
}

/** Runs a command to completion: optional stdin (then closed), returns output and the error stream. */
export async function spdyRunCommand(url: string, opts: RemoteCommandOpen & { input?: string }): Promise<{ stdout: string; stderr: string; error: string; protocol: string }> {
  const s = await spdyRemoteCommand(url, { stdout: true, stderr: true, ...opts, stdin: opts.stdin ?? opts.input !== undefined });
  if (s.stdin) {
    if (opts.input) s.stdin.write(opts.input);
    s.stdin.end();
  }
  const out = await s.done;
  s.session.close();
  return { ...out, protocol: s.protocol };
}

export interface PortForwardStreams {
  data: SpdyStream;
  error: SpdyStream;
}

let nextRequestId = 0;

/** One forwarded connection: an error and a data stream sharing a request id. */
export function spdyForwardPort(session: SpdySession, port: number): PortForwardStreams {
  const requestId = String(nextRequestId++);
  const error = session.openStream(headersFrom({ streamType: 'error', port: String(port), requestID: requestId }));
  error.end();
  const data = session.openStream(headersFrom({ streamType: 'data', port: String(port), requestID: requestId }));
  return { data, error };
}
