// berth's streaming server: the HTTP endpoint behind the URLs Exec, Attach and
// PortForward return. /exec/<token>, /attach/<token> and /portforward/<token>
// each take a single-use token and upgrade to SPDY/3.1 or WebSocket.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { StreamingRuntime } from '../../runtime/exec/session-types';
import type { Logger } from '../logger';
import { nonZeroExitStatus, successStatus } from './kube-status';
import { servePortForwardSpdy, servePortForwardWebSocket } from './portforward';
import { serveRemoteCommandSpdy, serveRemoteCommandWebSocket, type RemoteCommandOptions } from './remotecommand';
import { TokenStore } from './token-store';
import { isSpdyRequest, isWebSocketRequest, rejectUpgrade } from './upgrade';

export type StreamingRequest =
  | ({ kind: 'exec'; containerId: string; cmd: string[] } & RemoteCommandOptions)
  | ({ kind: 'attach'; containerId: string } & RemoteCommandOptions)
  | { kind: 'portforward'; podSandboxId: string; ports: number[] };

export interface StreamingServerOptions {
  address: string;
  port: number;
  tokenTtlSeconds: number;
  log: Logger;
  runtime: StreamingRuntime;
  /** How long a client may take to open its SPDY streams after the upgrade. */
  streamCreationTimeoutMs?: number;
}

export class StreamingServer {
  private readonly tokens: TokenStore<StreamingRequest>;
  private readonly server: Server;
  private readonly sockets = new Set<Duplex>();
  private boundPort = 0;
  private readonly log: Logger;

  constructor(private readonly options: StreamingServerOptions) {
    this.log = options.log.child({ component: 'streaming' });
    this.tokens = new TokenStore(options.tokenTtlSeconds * 1000);
    this.server = createServer((req, res) => this.onPlainRequest(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('connection', (socket: Duplex) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (this.server.address() as AddressInfo).port;
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Base of the URLs handed out, e.g. http://127.0.0.1:34567. */
  get baseUrl(): string {
    let host = this.options.address;
    if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
    if (host === '::') host = '::1';
    if (host.includes(':')) host = `[${host}]`;
    return `http://${host}:${this.boundPort}`;
  }

  /** How long URLs handed out from now on stay valid (a config reload). */
  setTokenTtlSeconds(seconds: number): void {
    this.tokens.setTtl(seconds * 1000);
  }

  /** Registers a request and returns the URL a client uses, once, to run it. */
  urlFor(request: StreamingRequest): string {
    const token = this.tokens.insert(request);
    return `${this.baseUrl}/${request.kind}/${token}`;
  }

  /** Stops listening and ends every live session (their processes are ended by the session). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private route(req: IncomingMessage): { kind: StreamingRequest['kind']; request: StreamingRequest } | { status: number; message: string } {
    const url = new URL(req.url ?? '/', 'http://streaming');
    const match = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
    if (!match) return { status: 404, message: 'not found' };
    if (req.method !== 'GET' && req.method !== 'POST') return { status: 405, message: 'method not allowed' };
    const request = this.tokens.consume(match[2]);
    if (!request || request.kind !== match[1]) return { status: 404, message: 'unknown or expired streaming token' };
    return { kind: request.kind, request };
  }

  private onPlainRequest(req: IncomingMessage, res: ServerResponse): void {
    const routed = this.route(req);
    if ('status' in routed) {
      res.writeHead(routed.status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${routed.message}\n`);
      return;
    }
    res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' }).end('this endpoint needs an upgrade to SPDY/3.1 or WebSocket\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err: Error) => this.log.debug({ err: err.message }, 'streaming socket error'));
    const routed = this.route(req);
    if ('status' in routed) {
      rejectUpgrade(socket, routed.status, routed.status === 404 ? 'Not Found' : 'Method Not Allowed', `${routed.message}\n`);
      return;
    }
    const websocket = isWebSocketRequest(req);
    if (!websocket && !isSpdyRequest(req)) {
      rejectUpgrade(socket, 400, 'Bad Request', 'unable to upgrade: missing upgrade headers in request\n');
      return;
    }
    const { request } = routed;
    const ctx = { log: this.log, streamCreationTimeoutMs: this.options.streamCreationTimeoutMs ?? 30_000 };
    const runtime = this.options.runtime;
    this.log.debug({ kind: request.kind, transport: websocket ? 'websocket' : 'spdy' }, 'streaming session starts');
    switch (request.kind) {
      case 'exec': {
        const run = async (io: Parameters<StreamingRuntime['exec']>[2], signal: AbortSignal) => {
          const code = await runtime.exec(request.containerId, request.cmd, io, signal);
          return code === 0 ? successStatus() : nonZeroExitStatus(code, `error executing command ${JSON.stringify(request.cmd)}`);
        };
        if (websocket) serveRemoteCommandWebSocket(req, socket, head, request, ctx, run);
        else serveRemoteCommandSpdy(req, socket, head, request, ctx, run);
        return;
      }
      case 'attach': {
        const run = async (io: Parameters<StreamingRuntime['attach']>[1], signal: AbortSignal) => {
          await runtime.attach(request.containerId, io, signal);
          return successStatus();
        };
        if (websocket) serveRemoteCommandWebSocket(req, socket, head, request, ctx, run);
        else serveRemoteCommandSpdy(req, socket, head, request, ctx, run);
        return;
      }
      case 'portforward': {
        const connect = (port: number) => runtime.portForward(request.podSandboxId, port);
        if (websocket) servePortForwardWebSocket(req, socket, head, request.ports, ctx, connect);
        else servePortForwardSpdy(req, socket, head, ctx, connect);
        return;
      }
    }
  }
}
