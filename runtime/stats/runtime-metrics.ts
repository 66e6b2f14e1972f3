// berth's own Prometheus metrics beyond the per-RPC ones in shim/metrics.ts: OCI
// runtime and CNI call latency, image pulls, restart recovery, and pods and
// containers by state (counted from the lookups at scrape time, so they are never stale).
import { Counter, Gauge, Histogram, type Registry } from './prometheus';
import type { ContainerLookup } from '../container/container-types';
import type { SandboxLookup } from '../sandbox/sandbox-types';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type CallOutcome = 'ok' | 'error';
export type RecoveryKind = 'sandbox' | 'container' | 'image' | 'cni';
export type RecoveryOutcome = 'recovered' | 'cleaned_up' | 'failed';

export interface StateLookups {
  sandboxes?: SandboxLookup;
  containers?: ContainerLookup;
}

export class RuntimeMetrics {
  private readonly ociSeconds: Histogram<'operation' | 'runtime' | 'outcome'>;
  private readonly cniSeconds: Histogram<'operation' | 'outcome'>;
  private readonly pullSeconds: Histogram<'outcome'>;
  private readonly pullBytes: Counter;
  private readonly recoveries: Counter<'kind' | 'outcome'>;
  private lookups: StateLookups = {};

  constructor(registry: Registry) {
    this.ociSeconds = new Histogram({
      name: 'berth_oci_runtime_call_duration_seconds',
      help: 'Latency of OCI runtime (runc/crun) and conmon calls, by operation',
      labelNames: ['operation', 'runtime', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.cniSeconds = new Histogram({
      name: 'berth_cni_call_duration_seconds',
      help: 'Latency of CNI plugin calls (ADD/DEL/CHECK/STATUS/GC)',
      labelNames: ['operation', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.pullSeconds = new Histogram({
      name: 'berth_image_pull_duration_seconds',
      help: 'Duration of image pulls',
      labelNames: ['outcome'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    });
    this.pullBytes = new Counter({ name: 'berth_image_pull_bytes_total', help: 'Bytes of image content downloaded', registers: [registry] });
    this.recoveries = new Counter({
      name: 'berth_restart_recoveries_total',
      help: 'Objects found at berthd start, by kind and what became of them',
      labelNames: ['kind', 'outcome'],
      registers: [registry],
    });
    const self = this;
    new Gauge({
      name: 'berth_pod_sandboxes',
      help: 'Pod sandboxes by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.reset();
        const counts = new Map<string, number>([['SANDBOX_READY', 0], ['SANDBOX_NOTREADY', 0]]);
        for (const pod of self.lookups.sandboxes?.list() ?? []) counts.set(pod.state, (counts.get(pod.state) ?? 0) + 1);
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'berth_containers',
      help: 'Containers by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.reset();
        const counts = new Map<string, number>(['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED', 'CONTAINER_UNKNOWN'].map((s) => [s, 0]));
        for (const container of self.lookups.containers?.list() ?? []) counts.set(container.state, (counts.get(container.state) ?? 0) + 1);
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });
  }

  /** Where the by-state gauges count from; set once the models exist. */
  setLookups(lookups: StateLookups): void {
    this.lookups = { ...this.lookups, ...lookups };
  }

  /** One OCI runtime or conmon call: operation is "create", "start", "kill", "delete", "state", "exec", "update"... */
  observeOciCall(operation: string, seconds: number, runtime = '', outcome: CallOutcome = 'ok'): void {
    this.ociSeconds.observe({ operation, runtime, outcome }, seconds);
  }

  /** One CNI call: operation is "ADD", "DEL", "CHECK", "STATUS", "GC". */
  observeCniCall(operation: string, seconds: number, outcome: CallOutcome = 'ok'): void {
    this.cniSeconds.observe({ operation, outcome }, seconds);
  }

  observeImagePull(seconds: number, bytes: number, outcome: CallOutcome = 'ok'): void {
    this.pullSeconds.observe({ outcome }, seconds);
    if (bytes > 0) this.pullBytes.inc(bytes);
  }

  countRecovery(kind: RecoveryKind, outcome: RecoveryOutcome, count = 1): void {
    if (count > 0) this.recoveries.inc({ kind, outcome }, count);
  }

  /** Times `work` as an OCI call, recording failures as outcome "error" and rethrowing them. */
  async timeOciCall<T>(operation: string, runtime: string, work: () => Promise<T>): Promise<T> {
    return timed(work, (seconds, outcome) => this.observeOciCall(operation, seconds, runtime, outcome));
  }

  async timeCniCall<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return timed(work, (seconds, outcome) => this.observeCniCall(operation, seconds, outcome));
  }
}

async function timed<T>(work: () => Promise<T>, record: (seconds: number, outcome: CallOutcome) => void): Promise<T> {
  const started = process.hrtime.bigint();
  try {
    const result = await work();
    record(Number(process.hrtime.bigint() - started) / 1e9, 'ok');
    return result;
  } catch (err) {
    record(Number(process.hrtime.bigint() - started) / 1e9, 'error');
    throw err;
  }
}
