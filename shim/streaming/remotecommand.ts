// The Kubernetes remotecommand protocol (exec and attach) over SPDY/3.1
// (channel.k8s.io, v2/v3/v4.channel.k8s.io: one SPDY stream per stdio stream,
// named by its streamtype header) and over WebSocket (channel.k8s.io,
// base64.channel.k8s.io and their v4 forms, v5.channel.k8s.io: one channel
// byte before each message). Both end the same way: the outcome as a Status on
// the error stream, then every stream finished and the connection closed.
import type { IncomingMessage } from 'node:http';
import { PassThrough, Writable, type Duplex } from 'node:stream';
import { TerminalResizes, type SessionIo } from '../../runtime/exec/session-types';
import type { Logger } from '../logger';
import { encodeStatus, internalErrorStatus, type KubeStatus } from './kube-status';
import { JsonObjectSplitter, terminalSizeFrom } from './json-object-splitter';
import { headerValue } from './spdy-frames';
import { SpdySession, type SpdyStream } from './spdy-session';
import { acceptSpdyUpgrade, acceptWebSocketUpgrade, negotiateStreamProtocol } from './upgrade';
import { CloseCode, WebSocketConnection } from './websocket';

export const SPDY_REMOTECOMMAND_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'] as const;
export const WEBSOCKET_REMOTECOMMAND_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'channel.k8s.io',
  'base64.channel.k8s.io',
] as const;

export interface RemoteCommandOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Runs the session; resolves with the Status to report. Thrown errors become an InternalError Status. */
export type RemoteCommandRun = (io: SessionIo, signal: AbortSignal) => Promise<KubeStatus>;

export interface RemoteCommandContext {
  log: Logger;
  /** How long a SPDY client may take to open its streams. */
  streamCreationTimeoutMs: number;
}

async function runToStatus(run: RemoteCommandRun, io: SessionIo, signal: AbortSignal, log: Logger): Promise<KubeStatus> {
  try {
    return await run(io, signal);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    log.warn({ err: message }, 'streaming session failed');
    return internalErrorStatus(`error executing command in container: ${message}`);
  }
}

function feedResizes(source: NodeJS.ReadableStream, resizes: TerminalResizes, log: Logger): void {
  const splitter = new JsonObjectSplitter();
  source.on('data', (chunk: Buffer) => {
    try {
      for (const obj of splitter.push(chunk)) {
        const size = terminalSizeFrom(obj);
        if (size) resizes.push(size);
      }
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'bad data on the resize stream; ignoring the rest');
      source.removeAllListeners('data');
      source.resume();
    }
  });
}

// ---------------------------------------------------------------- SPDY

export function serveRemoteCommandSpdy(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  opts: RemoteCommandOptions,
  ctx: RemoteCommandContext,
  run: RemoteCommandRun,
): void {
  const negotiated = negotiateStreamProtocol(req, socket, SPDY_REMOTECOMMAND_PROTOCOLS);
  if (!negotiated.ok) return;
  // A client that names no protocol is a channel.k8s.io (v1) client.
  const protocol = negotiated.protocol || 'channel.k8s.io';
  acceptSpdyUpgrade(socket, negotiated.protocol);
  if (head.length > 0) socket.unshift(head);
  const session = new SpdySession(socket, 'server');
  const jsonStatus = protocol === 'v4.channel.k8s.io';
  const resizeSupported = protocol === 'v4.channel.k8s.io' || protocol === 'v3.channel.k8s.io';
  const stderrWanted = opts.stderr && !opts.tty;
  const expected = 1 + (opts.stdin ? 1 : 0) + (opts.stdout ? 1 : 0) + (stderrWanted ? 1 : 0) + (opts.tty && resizeSupported ? 1 : 0);

  const streams: Partial<Record<'error' | 'stdin' | 'stdout' | 'stderr' | 'resize', SpdyStream>> = {};
  const abort = new AbortController();
  let started = false;
  let received = 0;

  const timer = setTimeout(() => {
    ctx.log.warn({ received, expected }, 'timed out waiting for the client to create streams');
    session.close();
  }, ctx.streamCreationTimeoutMs);
  timer.unref();

  session.on('close', () => {
    clearTimeout(timer);
    abort.abort(new Error('client disconnected'));
  });
  session.on('error', (err) => ctx.log.debug({ err: err.message }, 'SPDY protocol error'));
  session.on('stream', (stream) => {
    const type = headerValue(stream.headers, 'streamtype') ?? '';
    if (started) {
      stream.resetStream();
      return;
    }
    if (type === 'error' || type === 'stdin' || type === 'stdout' || type === 'stderr' || type === 'resize') {
      if (streams[type]) {
        stream.resetStream();
        return;
      }
      streams[type] = stream;
      received++;
    } else {
      ctx.log.debug({ type }, 'unexpected stream type');
      stream.resetStream();
      return;
    }
    if (received === expected) {
      clearTimeout(timer);
      started = true;
      void start();
    }
  });

  async function start(): Promise<void> {
    const ownStreams = Object.values(streams) as SpdyStream[];
    // Readable sides nobody reads must still flow, or their window never reopens.
    for (const s of [streams.error, streams.stdout, streams.stderr]) s?.resume();
    let resizes: TerminalResizes | null = null;
    if (opts.tty) {
      resizes = new TerminalResizes();
      if (streams.resize) feedResizes(streams.resize, resizes, ctx.log);
    }
    const io: SessionIo = {
      stdin: opts.stdin ? (streams.stdin ?? null) : null,
      stdout: streams.stdout ?? null,
      stderr: stderrWanted ? (streams.stderr ?? null) : null,
      tty: opts.tty,
      resizes,
    };
    const status = await runToStatus(run, io, abort.signal, ctx.log);
    if (session.closed) return;
    const errorStream = streams.error;
    const payload = encodeStatus(status, jsonStatus);
    await finishWritable(streams.stdout);
    await finishWritable(streams.stderr);
    if (errorStream && !errorStream.destroyed) {
      if (payload.length > 0) errorStream.write(payload);
      await finishWritable(errorStream);
    }
    for (const s of ownStreams) if (!s.writableEnded && !s.destroyed) s.end();
    session.close();
  }
}

function finishWritable(stream: Writable | undefined): Promise<void> {
  if (!stream || stream.destroyed || stream.writableFinished) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => resolve();
    stream.once('finish', done);
    stream.once('close', done);
    stream.once('error', done);
    if (!stream.writableEnded) stream.end();
  });
}

// ---------------------------------------------------------------- WebSocket

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE_SIGNAL = 255;

/** Sends everything written to it as messages on one channel of a k8s channel WebSocket. */
export class ChannelWriter extends Writable {
  constructor(
    private readonly ws: WebSocketConnection,
    private readonly channel: number,
    private readonly base64: boolean,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    sendOnChannel(this.ws, this.channel, chunk, this.base64).then(() => callback(), callback);
  }
}

export function sendOnChannel(ws: WebSocketConnection, channel: number, data: Buffer, base64: boolean): Promise<void> {
  if (!ws.isOpen) return Promise.reject(new Error('WebSocket is closed'));
  if (base64) return ws.send(Buffer.from(String.fromCharCode(48 + channel) + data.toString('base64')), false);
  return ws.send(Buffer.concat([Buffer.from([channel]), data]), true);
}

/** Channel and payload of a received message, in either framing. */
export function decodeChannelMessage(message: { binary: boolean; data: Buffer }, base64: boolean): { channel: number; data: Buffer } | undefined {
  if (message.data.length === 0) return undefined;
  if (base64 && !message.binary) {
    const channel = message.data[0] - 48;
    return { channel, data: Buffer.from(message.data.subarray(1).toString('latin1'), 'base64') };
  }
  return { channel: message.data[0], data: message.data.subarray(1) };
}

export function serveRemoteCommandWebSocket(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  opts: RemoteCommandOptions,
  ctx: RemoteCommandContext,
  run: RemoteCommandRun,
): void {
  const protocol = acceptWebSocketUpgrade(req, socket, WEBSOCKET_REMOTECOMMAND_PROTOCOLS);
  if (protocol === undefined) return;
  const ws = new WebSocketConnection(socket, 'server', 16 * 1024 * 1024, head);
  const base64 = protocol.includes('base64');
  const jsonStatus = protocol === 'v4.channel.k8s.io' || protocol === 'v4.base64.channel.k8s.io' || protocol === 'v5.channel.k8s.io';
  const closeSignal = protocol === 'v5.channel.k8s.io';
  const stderrWanted = opts.stderr && !opts.tty;
  const abort = new AbortController();

  const stdin = opts.stdin ? new PassThrough() : null;
  const resizes = opts.tty ? new TerminalResizes() : null;
  const resizeFeed = new PassThrough();
  if (resizes) feedResizes(resizeFeed, resizes, ctx.log);

  ws.on('message', (message) => {
    const decoded = decodeChannelMessage(message, base64);
    if (!decoded) return;
    switch (decoded.channel) {
      case STDIN:
        if (stdin && !stdin.writableEnded) stdin.write(decoded.data);
        break;
      case RESIZE:
        if (resizes) resizeFeed.write(decoded.data);
        break;
      case CLOSE_SIGNAL:
        if (closeSignal && decoded.data[0] === STDIN && stdin && !stdin.writableEnded) stdin.end();
        break;
      default:
        break;
    }
  });
  ws.on('close', () => {
    if (stdin && !stdin.writableEnded) stdin.end();
    abort.abort(new Error('client disconnected'));
  });

  const stdout = opts.stdout ? new ChannelWriter(ws, STDOUT, base64) : null;
  const stderr = stderrWanted ? new ChannelWriter(ws, STDERR, base64) : null;
  // An empty message on the lowest channel the server writes tells the client the session is up.
  const first = opts.stdout ? STDOUT : stderrWanted ? STDERR : ERROR;
  sendOnChannel(ws, first, Buffer.alloc(0), base64).catch(() => undefined);

  void (async () => {
    const io: SessionIo = { stdin, stdout, stderr, tty: opts.tty, resizes };
    const status = await runToStatus(run, io, abort.signal, ctx.log);
    if (!ws.isOpen) return;
    await finishWritable(stdout ?? undefined);
    await finishWritable(stderr ?? undefined);
    const payload = encodeStatus(status, jsonStatus);
    if (payload.length > 0) await sendOnChannel(ws, ERROR, payload, base64).catch(() => undefined);
    ws.close(CloseCode.NORMAL, '');
  })();
}
