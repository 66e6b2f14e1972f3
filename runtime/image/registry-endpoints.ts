// Where a registry is reached: its mirrors from config first, then the
// registry itself (unless mirrors-only), over HTTPS, plain HTTP where
// configured, or plain HTTP after HTTPS for a loopback registry, as containerd
// does. One connection pool per TLS setting, kept between pulls.
import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher } from 'undici';
import type { RegistryHostConfig } from '../config';

export interface RegistryEndpoint {
  /** "http://127.0.0.1:5000/v2" — every API path is appended to it. */
  apiBase: string;
  /** "127.0.0.1:5000". */
  host: string;
  dispatcher: Dispatcher;
}

export interface RegistryEndpointsOptions {
  registries: Record<string, RegistryHostConfig>;
  /** Time to wait for response headers (ms). */
  headersTimeoutMs: number;
  /** A body that makes no progress for this long fails (ms). */
  bodyTimeoutMs: number;
}

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(:\d+)?$/;

export class RegistryEndpoints {
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly options: RegistryEndpointsOptions) {}

  /** Endpoints for a registry, in the order they are tried. */
  of(registry: string): RegistryEndpoint[] {
    const config = this.options.registries[registry];
    const insecure = config?.insecure_skip_verify ?? false;
    const caFile = config?.ca_file ?? '';
    const out: RegistryEndpoint[] = [];
    for (const mirror of config?.mirrors ?? []) {
      const url = new URL(mirror);
      const path = url.pathname.replace(/\/+$/, '');
      const apiBase = `${url.protocol}//${url.host}${path.endsWith('/v2') ? path : `${path}/v2`}`;
      out.push({ apiBase, host: url.host, dispatcher: this.agentFor(`${url.protocol}${insecure}${caFile}`, { insecure, caFile }) });
    }
    if (out.length === 0 || (config?.fallback_to_upstream ?? true)) {
      const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
      const dispatcher = this.agentFor(`upstream${insecure}${caFile}`, { insecure, caFile });
      if (config?.plain_http) {
        out.push({ apiBase: `http://${host}/v2`, host, dispatcher });
      } else {
        out.push({ apiBase: `https://${host}/v2`, host, dispatcher });
        if (LOOPBACK_HOST.test(host)) out.push({ apiBase: `http://${host}/v2`, host, dispatcher });
      }
    }
    return out;
  }

  private agentFor(key: string, tls: { insecure: boolean; caFile: string }): Agent {
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({
        headersTimeout: this.options.headersTimeoutMs,
        bodyTimeout: this.options.bodyTimeoutMs,
        connectTimeout: 10_000,
        connections: 16,
        connect: {
          rejectUnauthorized: !tls.insecure,
          ...(tls.caFile ? { ca: readFileSync(tls.caFile, 'utf8') } : {}),
        },
      });
      this.agents.set(key, agent);
    }
    return agent;
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((agent) => agent.close().catch(() => undefined)));
    this.agents.clear();
  }
}
