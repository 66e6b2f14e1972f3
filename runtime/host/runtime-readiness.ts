// Status' RuntimeReady, honestly: berth can only run containers when the default
// handler's OCI runtime and conmon are there and answer. Both are probed
// asynchronously (access, stat, `--version`), and the answer is kept for a few
// seconds so the kubelet's polling costs nothing; a binary that comes back is
// seen at the next probe.
import { isAbsolute } from 'node:path';
import type { BerthConfig } from '../config';
import type { HostFacts } from './host-facts';
import { type BinaryProbe, probeBinary, type VersionCache } from './binaries';

export interface RuntimeReadiness {
  ready: boolean;
  /** CamelCase reason when not ready (the CRI's convention), "" when ready. */
  reason: string;
  message: string;
  /** What was probed, for Status(verbose). */
  checked: BinaryProbe[];
  /** ISO time of the probe this answer comes from. */
  checkedAt: string;
}

export interface RuntimeReadinessOptions {
  handler: string;
  runtimeBinary: string;
  conmonBinary: string;
  /** How long an answer is reused (ms). */
  ttlMs?: number;
  /** Set when conmon cannot become usable without a restart: the message RuntimeReady carries. */
  conmonNeedsRestart?: string;
  now?: () => number;
  /** Versions asked already (at start): an unchanged binary is not run again for the first Status. */
  versions?: VersionCache;
}

export const DEFAULT_READINESS_TTL_MS = 5000;

export class RuntimeReadinessProbe {
  private cached: { at: number; value: RuntimeReadiness; promise?: Promise<RuntimeReadiness> } | undefined;
  private inFlight: Promise<RuntimeReadiness> | undefined;
  private readonly versions: VersionCache;
  private readonly now: () => number;

  constructor(private readonly options: RuntimeReadinessOptions) {
    this.now = options.now ?? Date.now;
    this.versions = options.versions ?? new Map();
  }

  /**
   * Probes the binaries the container model really runs: the paths found at start. conmon is
   * started with posix_spawn, which does not search PATH, so a bare name not found at start stays
   * unusable until berthd restarts, and readiness says so instead of finding it later.
   */
  static forHost(config: BerthConfig, host: Pick<HostFacts, 'conmon'>, options: { ttlMs?: number; versions?: VersionCache } = {}): RuntimeReadinessProbe {
    const handler = config.oci.default_runtime;
    const conmon = 'path' in host.conmon ? host.conmon.path : config.oci.conmon;
    return new RuntimeReadinessProbe({
      handler, runtimeBinary: config.oci.runtimes[handler].path, conmonBinary: conmon, ttlMs: options.ttlMs, versions: options.versions,
      ...(isAbsolute(conmon) ? {} : { conmonNeedsRestart: `conmon ("${conmon}") was not in PATH when berthd started: install it and restart berthd, or set oci.conmon to its absolute path` }),
    });
  }

  /** The latest answer, probing again when it is older than the TTL (one probe at a time). */
  current(): Promise<RuntimeReadiness> {
    const ttl = this.options.ttlMs ?? DEFAULT_READINESS_TTL_MS;
    // Not an async function: the cached answer's promise is handed out as it is, not wrapped in another per call.
    if (this.cached && this.now() - this.cached.at < ttl) return (this.cached.promise ??= Promise.resolve(this.cached.value));
    this.inFlight ??= this.probe().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async probe(): Promise<RuntimeReadiness> {
    const at = this.now();
    const [runtime, conmon] = await Promise.all([
      probeBinary(`OCI runtime of handler "${this.options.handler}"`, this.options.runtimeBinary, { cache: this.versions }),
      probeBinary('conmon', this.options.conmonBinary, { cache: this.versions }),
    ]);
    const problems: { reason: string; message: string }[] = [];
    if (!runtime.found) problems.push({ reason: 'OCIRuntimeMissing', message: `${runtime.name} not found: ${runtime.problem}` });
    else if (!runtime.usable) problems.push({ reason: 'OCIRuntimeUnusable', message: `${runtime.name} does not run: ${runtime.problem}` });
    if (this.options.conmonNeedsRestart) problems.push({ reason: 'ConmonMissing', message: this.options.conmonNeedsRestart });
    else if (!conmon.found) problems.push({ reason: 'ConmonMissing', message: `conmon not found: ${conmon.problem}` });
    else if (!conmon.usable) problems.push({ reason: 'ConmonUnusable', message: `conmon does not run: ${conmon.problem}` });
    const value: RuntimeReadiness = {
      ready: problems.length === 0,
      reason: problems[0]?.reason ?? '',
      message: problems.map((p) => p.message).join('; '),
      checked: [runtime, conmon],
      checkedAt: new Date(at).toISOString(),
    };
    this.cached = { at, value };
    return value;
  }
}
