// Prometheus metrics on 127.0.0.1:<port>/metrics. The registry is created here and
// handed down, so runtime/ parts register their own metrics on it without a global.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class BerthMetrics {
  readonly registry = new Registry();
  readonly rpcTotal: Counter<'method'>;
  readonly rpcErrors: Counter<'method' | 'code'>;
  readonly rpcSeconds: Histogram<'method'>;
  private server?: Server;

  constructor(collectProcessMetrics = true) {
    if (collectProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'berth_' });
    this.rpcTotal = new Counter({
      name: 'berth_cri_requests_total',
      help: 'CRI calls received, by method',
      labelNames: ['method'],
      registers: [this.registry],
    });
    this.rpcErrors = new Counter({
      name: 'berth_cri_request_errors_total',
      help: 'CRI calls that failed, by method and gRPC status code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.rpcSeconds = new Histogram({
      name: 'berth_cri_request_duration_seconds',
      help: 'CRI call latency, by method',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
  }

  /** Serves /metrics; resolves with the bound port. */
  async listen(address: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
