// The prom-client classes berth uses, each from its own file: prom-client's
// index loads everything it has (the push gateway, cluster aggregation,
// summaries, and the default process metrics with @opentelemetry/api: ~90
// modules, a large share of berthd's start). The default process metrics are
// loaded once berthd serves (collectProcessMetrics).
import type * as PromClient from 'prom-client';

export const Counter: typeof PromClient.Counter = require('prom-client/lib/counter');
export const Gauge: typeof PromClient.Gauge = require('prom-client/lib/gauge');
export const Histogram: typeof PromClient.Histogram = require('prom-client/lib/histogram');
export const Registry: typeof PromClient.Registry = require('prom-client/lib/registry');

export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;
export type Registry = PromClient.Registry;

/** Node.js's process metrics (CPU, memory, handles, event loop lag, GC) on `registry`, names prefixed. */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  const collectDefaultMetrics = require('prom-client/lib/defaultMetrics') as typeof PromClient.collectDefaultMetrics;
  collectDefaultMetrics({ register: registry, prefix });
}
