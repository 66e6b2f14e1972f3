// Prometheus metrics on 127.0.0.1:<port>/metrics. The registry is created here and
// handed down, so runtime/ parts register their own metrics on it without a global.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectProcessMetrics } from '../runtime/stats/prometheus';

/**
 * How often the event-loop monitor's timer is due. The histogram records the
 * whole interval between two firings; the delay is what exceeds this.
 */
export const EVENT_LOOP_RESOLUTION_MS = 10;
const EVENT_LOOP_QUANTILES: ReadonlyArray<[label: string, percentile: number]> = [['0.5', 50], ['0.99', 99], ['1', 100]];

/** Observations a method's meter holds before it hands them to prom-client unasked (when nothing scrapes). */
const METER_BATCH = 512;

/**
 * One CRI method's calls, counted and timed on the call path in plain fields and handed to prom-client in
 * batches: at each scrape (the metrics' collect) and every METER_BATCH calls. prom-client's observe validates and
 * hashes its labels and looks its bucket up on every call, in code V8 still interprets during a daemon's first
 * minute; a batch runs that code many times in one loop, where it is optimized early.
 */
export class RpcMeter {
  private calls = 0;
  private readonly seconds: number[] = [];

  constructor(
    private readonly total: { inc(value: number): void },
    private readonly histogram: { observe(value: number): void },
  ) {}

  /** A call arrived. */
  called(): void {
    this.calls++;
  }

  /** A call ended after `seconds`. */
  ended(seconds: number): void {
    if (this.seconds.push(seconds) >= METER_BATCH) this.flush();
  }

  /** Hands what was counted to prom-client. */
  flush(): void {
    if (this.calls > 0) this.total.inc(this.calls);
    this.calls = 0;
    const seconds = this.seconds;
    for (let i = 0; i < seconds.length; i++) this.histogram.observe(seconds[i]);
    seconds.length = 0;
  }
}

export class BerthMetrics {
  readonly registry = new Registry();
  readonly rpcTotal: Counter<'method'>;
  readonly rpcErrors: Counter<'method' | 'code'>;
  readonly rpcSeconds: Histogram<'method'>;
  private server?: Server;
  /**
   * The event-loop monitor, made when /metrics is served: nothing else reads it, and it costs a timer every
   * EVENT_LOOP_RESOLUTION_MS and a ~360 KiB histogram (an idle berthd with metrics disabled ran both for nothing).
   */
  private loopDelay?: IntervalHistogram;
  private processMetrics = false;
  private readonly rpcMeters = new Map<string, RpcMeter>();

  constructor() {
    this.rpcTotal = new Counter({
      name: 'berth_cri_requests_total',
      help: 'CRI calls received, by method',
      labelNames: ['method'],
      registers: [this.registry],
      collect: () => this.flushRpcMeters(),
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
      collect: () => this.flushRpcMeters(),
    });
    this.registerEventLoopDelay();
  }

  /** The meter of CRI method `method` (berth_cri_requests_total and berth_cri_request_duration_seconds), one per method. */
  rpcMeter(method: string): RpcMeter {
    let meter = this.rpcMeters.get(method);
    if (!meter) {
      // Label children made once: prom-client validates and copies labels on every labelled call.
      meter = new RpcMeter(this.rpcTotal.labels({ method }), this.rpcSeconds.labels({ method }));
      this.rpcMeters.set(method, meter);
    }
    return meter;
  }

  private flushRpcMeters(): void {
    for (const meter of this.rpcMeters.values()) meter.flush();
  }

  /**
   * Node.js's own process metrics (berth_process_*, berth_nodejs_*): added once berthd serves (their
   * modules are not loaded before), or at the first scrape if that comes first; never when /metrics is not
   * served (metrics.enabled = false): nobody could read them, and they keep their own event-loop monitor,
   * a GC observer and ~20 modules.
   */
  collectProcessMetrics(): void {
    if (this.processMetrics || !this.server) return;
    this.processMetrics = true;
    collectProcessMetrics(this.registry, 'berth_');
  }

  /**
   * The event loop is the daemon: how late it ran work since the previous
   * scrape (p50, p99 and max; quantile "1" is the max). Each scrape starts a
   * new window, so a stall shows in the scrape after it and then leaves;
   * two scrapers share (and split) the windows.
   */
  private registerEventLoopDelay(): void {
    const monitor = (): IntervalHistogram | undefined => this.loopDelay;
    let windowStart = process.hrtime.bigint();
    let windowLength = 0;
    // Registered first: the registry collects in order, and the window gauge reports what this collect measured.
    new Gauge({
      name: 'berth_event_loop_delay_seconds',
      help: 'Event loop delay since the previous scrape, by quantile (1 = max); 0 when the loop was never late',
      labelNames: ['quantile'],
      registers: [this.registry],
      collect() {
        const now = process.hrtime.bigint();
        const histogram = monitor();
        const late = (nanos: number): number => (!histogram || histogram.count === 0 ? 0 : Math.max(0, nanos / 1e9 - EVENT_LOOP_RESOLUTION_MS / 1000));
        for (const [quantile, p] of EVENT_LOOP_QUANTILES) this.set({ quantile }, late(!histogram ? 0 : p === 100 ? histogram.max : histogram.percentile(p)));
        windowLength = Number(now - windowStart) / 1e9;
        windowStart = now;
        histogram?.reset();
      },
    });
    new Gauge({
      name: 'berth_event_loop_delay_window_seconds',
      help: 'Length of the window berth_event_loop_delay_seconds covers (time since the previous scrape)',
      registers: [this.registry],
      collect() {
        this.set(windowLength);
      },
    });
  }

  /** Serves /metrics; resolves with the bound port. */
  async listen(address: string, port: number): Promise<number> {
    if (!this.loopDelay) {
      this.loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
      this.loopDelay.enable();
    }
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      this.collectProcessMetrics();
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
    this.loopDelay?.disable();
    this.loopDelay = undefined;
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
