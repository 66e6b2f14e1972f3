// An OCI distribution (v2) client over undici: endpoints from config (mirrors
// first, then the registry itself), anonymous, Basic and Bearer-token auth from
// the CRI AuthConfig, plain HTTP where configured or for loopback registries
// whose HTTPS fails, bounded retries of idempotent requests, and timeouts.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { RegistryHostConfig } from '../config';
import { BerthError, describeError, failedPrecondition, invalidArgument, notFound, unavailable } from '../errors';
import type { ImageReference } from './image-reference';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, type Descriptor } from './image-manifest';

/** Credentials as the CRI AuthConfig carries them. */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** base64("username:password"). */
  auth?: string;
  /** An OAuth2 refresh token for the registry's token service. */
  identityToken?: string;
  /** A bearer token sent as is. */
  registryToken?: string;
  /** When set, the credentials go only to this host. */
  serverAddress?: string;
}

export interface RegistryLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface RegistryClientOptions {
  registries: Record<string, RegistryHostConfig>;
  log: RegistryLogger;
  /** Time to wait for response headers (ms). */
  headersTimeoutMs?: number;
  /** A body that makes no progress for this long fails (ms). */
  bodyTimeoutMs?: number;
  /** Attempts of each idempotent small request (manifests, tokens). */
  attempts?: number;
  /** Base delay between attempts (ms), doubled each time. */
  retryDelayMs?: number;
}

export interface RegistryEndpoint {
  /** "http://127.0.0.1:5000/v2" — every API path is appended to it. */
  apiBase: string;
  /** "127.0.0.1:5000". */
  host: string;
  mirror: boolean;
  dispatcher: Dispatcher;
}

export interface FetchedManifest {
  body: Buffer;
  contentType: string;
  /** sha256 of the body, verified against the requested digest when one was asked for. */
  digest: string;
  endpoint: RegistryEndpoint;
}

export interface BlobStream {
  body: Readable;
  /** Content-Length when the registry sent one. */
  length?: number;
  endpoint: RegistryEndpoint;
}

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(:\d+)?$/;
const REDIRECT = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export function parseWwwAuthenticate(header: string): Challenge | undefined {
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  for (let m = re.exec(match[2]); m; m = re.exec(match[2])) params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  return { scheme: match[1].toLowerCase(), params };
}

function basicFrom(creds: RegistryCredentials | undefined): string | undefined {
  if (!creds) return undefined;
  if (creds.username) return Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64');
  if (creds.auth) {
    const decoded = Buffer.from(creds.auth, 'base64').toString('utf8');
    if (!decoded.includes(':')) throw invalidArgument('auth.auth is not base64 of "username:password"');
    return Buffer.from(decoded).toString('base64');
  }
  return undefined;
}

function usernameFrom(creds: RegistryCredentials | undefined): string | undefined {
  if (creds?.username) return creds.username;
  if (creds?.auth) return Buffer.from(creds.auth, 'base64').toString('utf8').split(':')[0];
  return undefined;
}

function normalizeServerAddress(address: string): string {
  const stripped = address.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  return stripped === 'index.docker.io' || stripped === 'registry-1.docker.io' ? 'docker.io' : stripped;
}

function isNetworkError(err: unknown): boolean {
  return !(err instanceof BerthError);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function drain(body: Dispatcher.ResponseData['body']): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    // the connection goes away with it
  }
}

async function readLimited(body: Dispatcher.ResponseData['body'], limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      throw invalidArgument(`${what} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export class RegistryClient {
  private readonly agents = new Map<string, Agent>();
  private readonly tokens = new Map<string, { header: string; expires: number }>();
  private readonly headersTimeoutMs: number;
  private readonly bodyTimeoutMs: number;
  private readonly attempts: number;
  private readonly retryDelayMs: number;

  constructor(private readonly options: RegistryClientOptions) {
    this.headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.bodyTimeoutMs = options.bodyTimeoutMs ?? 60_000;
    this.attempts = options.attempts ?? 3;
    this.retryDelayMs = options.retryDelayMs ?? 200;
  }

  private agentFor(key: string, tls: { insecure: boolean; caFile: string }): Agent {
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({
        headersTimeout: this.headersTimeoutMs,
        bodyTimeout: this.bodyTimeoutMs,
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

  /** Endpoints for a registry, in the order they are tried. */
  endpoints(registry: string): RegistryEndpoint[] {
    const config = this.options.registries[registry];
    const insecure = config?.insecure_skip_verify ?? false;
    const caFile = config?.ca_file ?? '';
    const out: RegistryEndpoint[] = [];
    for (const mirror of config?.mirrors ?? []) {
      const url = new URL(mirror);
      const path = url.pathname.replace(/\/+$/, '');
      const apiBase = `${url.protocol}//${url.host}${path.endsWith('/v2') ? path : `${path}/v2`}`;
      out.push({ apiBase, host: url.host, mirror: true, dispatcher: this.agentFor(`${url.protocol}${insecure}${caFile}`, { insecure, caFile }) });
    }
    if (out.length === 0 || (config?.fallback_to_upstream ?? true)) {
      const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
      const dispatcher = this.agentFor(`upstream${insecure}${caFile}`, { insecure, caFile });
      if (config?.plain_http) {
        out.push({ apiBase: `http://${host}/v2`, host, mirror: false, dispatcher });
      } else {
        out.push({ apiBase: `https://${host}/v2`, host, mirror: false, dispatcher });
        // As containerd does: a loopback registry without TLS is reached over plain HTTP.
        if (LOOPBACK_HOST.test(host)) out.push({ apiBase: `http://${host}/v2`, host, mirror: false, dispatcher });
      }
    }
    return out;
  }

  private credentialsFor(endpoint: RegistryEndpoint, registry: string, creds: RegistryCredentials | undefined): RegistryCredentials | undefined {
    if (!creds) return undefined;
    if (!creds.serverAddress) return creds;
    const server = normalizeServerAddress(creds.serverAddress);
    return server === registry || server === endpoint.host ? creds : undefined;
  }

  /** One request with auth challenges answered and redirects followed; the caller consumes or drains the body. */
  private async send(
    endpoint: RegistryEndpoint,
    registry: string,
    repository: string,
    creds: RegistryCredentials | undefined,
    method: 'GET' | 'HEAD',
    path: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Dispatcher.ResponseData> {
    const scope = `repository:${repository}:pull`;
    const tokenKey = `${endpoint.apiBase}|${scope}|${usernameFrom(creds) ?? ''}`;
    const endpointCreds = this.credentialsFor(endpoint, registry, creds);
    let authorization = this.cachedToken(tokenKey);
    let answeredChallenge = false;
    for (;;) {
      let url = `${endpoint.apiBase}${path}`;
      let response: Dispatcher.ResponseData | undefined;
      let sendAuth = true;
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const h: Record<string, string> = { 'user-agent': 'berth', ...headers };
        if (authorization && sendAuth) h.authorization = authorization;
        response = await request(url, { method, headers: h, dispatcher: endpoint.dispatcher, signal });
        if (!REDIRECT.has(response.statusCode)) break;
        const location = response.headers.location;
        await drain(response.body);
        if (typeof location !== 'string') throw unavailable(`${endpoint.host} redirected without a location`);
        const next = new URL(location, url);
        // Blob storage behind a redirect must not see the registry's credentials.
        if (next.origin !== new URL(url).origin) sendAuth = false;
        url = next.toString();
        if (hop === MAX_REDIRECTS) throw unavailable(`${endpoint.host}: too many redirects`);
      }
      if (!response) throw unavailable(`${endpoint.host}: no response`);
      if (response.statusCode !== 401 || answeredChallenge) return response;
      const challenge = parseWwwAuthenticate(String(response.headers['www-authenticate'] ?? ''));
      await drain(response.body);
      answeredChallenge = true;
      if (challenge?.scheme === 'basic') {
        const basic = basicFrom(endpointCreds);
        if (!basic) throw failedPrecondition(`pull access denied for ${repository} at ${endpoint.host}: the registry requires credentials and none were given`);
        authorization = `Basic ${basic}`;
      } else if (challenge?.scheme === 'bearer') {
        authorization = await this.fetchToken(endpoint, challenge.params, scope, endpointCreds, signal);
        this.tokens.set(tokenKey, { header: authorization, expires: Date.now() + 50_000 });
      } else {
        throw failedPrecondition(`pull access denied for ${repository} at ${endpoint.host}: unsupported authentication challenge`);
      }
    }
  }

  private cachedToken(key: string): string | undefined {
    const token = this.tokens.get(key);
    if (token && token.expires > Date.now()) return token.header;
    this.tokens.delete(key);
    return undefined;
  }

  private async fetchToken(
    endpoint: RegistryEndpoint,
    params: Record<string, string>,
    scope: string,
    creds: RegistryCredentials | undefined,
    signal?: AbortSignal,
  ): Promise<string> {
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const realm = params.realm;
    if (!realm || !/^https?:\/\//.test(realm)) throw failedPrecondition(`${endpoint.host} asked for a bearer token without a usable realm`);
    const url = new URL(realm);
    const scopes = params.scope ? params.scope.split(' ') : [scope];
    let response: Dispatcher.ResponseData;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'berth', scope: scopes.join(' ') });
      if (params.service) form.set('service', params.service);
      response = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'berth' },
        body: form.toString(),
        dispatcher: endpoint.dispatcher,
        signal,
      });
    } else {
      if (params.service) url.searchParams.set('service', params.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const basic = basicFrom(creds);
      response = await request(url, {
        method: 'GET',
        headers: { 'user-agent': 'berth', ...(basic ? { authorization: `Basic ${basic}` } : {}) },
        dispatcher: endpoint.dispatcher,
        signal,
      });
    }
    if (response.statusCode === 401 || response.statusCode === 403) {
      await drain(response.body);
      throw failedPrecondition(`pull access denied at ${endpoint.host}: the token service refused the credentials`);
    }
    if (response.statusCode !== 200) {
      await drain(response.body);
      throw unavailable(`token service ${url.host} answered HTTP ${response.statusCode}`);
    }
    const body = JSON.parse((await readLimited(response.body, 1024 * 1024, 'token response')).toString('utf8')) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw unavailable(`token service ${url.host} returned no token`);
    return `Bearer ${token}`;
  }

  /** Retries network failures and 5xx/429 answers a bounded number of times. */
  private async withRetries<T>(what: string, attempt: (n: number) => Promise<T>): Promise<T> {
    let last: unknown;
    for (let n = 0; n < this.attempts; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        last = err;
        const retryable = isNetworkError(err) || (err instanceof BerthError && err.kind === 'Unavailable');
        if (!retryable || n === this.attempts - 1) break;
        this.options.log.debug({ what, attempt: n + 1, err: describeError(err) }, 'registry request failed; retrying');
        await sleep(this.retryDelayMs * 2 ** n);
      }
    }
    throw last;
  }

  /** Tries each endpoint in order; the last meaningful error wins when all fail. */
  private async overEndpoints<T>(registry: string, what: string, fn: (endpoint: RegistryEndpoint) => Promise<T>, preferred?: RegistryEndpoint): Promise<T> {
    const all = this.endpoints(registry);
    const ordered = preferred ? [preferred, ...all.filter((e) => e.apiBase !== preferred.apiBase)] : all;
    const errors: string[] = [];
    let last: unknown;
    for (const endpoint of ordered) {
      try {
        return await this.withRetries(`${what} from ${endpoint.apiBase}`, () => fn(endpoint));
      } catch (err) {
        last = err;
        errors.push(`${endpoint.apiBase}: ${describeError(err)}`);
        this.options.log.debug({ endpoint: endpoint.apiBase, what, err: describeError(err) }, 'registry endpoint failed; trying the next');
      }
    }
    if (last instanceof BerthError && ordered.length === 1) throw last;
    if (last instanceof BerthError) {
      const message = `${what} failed on every endpoint: ${errors.join('; ')}`;
      throw new BerthError(last.kind, message);
    }
    throw unavailable(`${what} failed on every endpoint: ${errors.join('; ')}`);
  }

  /** GETs a manifest or index by tag or digest, verifying the digest when one was asked for. */
  async fetchManifest(ref: ImageReference, reference: string, creds?: RegistryCredentials, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `manifest ${ref.registry}/${ref.repository}:${reference}`;
    return this.overEndpoints(ref.registry, what, async (endpoint) => {
      const response = await this.send(endpoint, ref.registry, ref.repository, creds, 'GET', `/${ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal);
      if (response.statusCode === 404) {
        await drain(response.body);
        throw notFound(`${ref.registry}/${ref.repository}:${reference} not found`);
      }
      if (response.statusCode === 401 || response.statusCode === 403) {
        await drain(response.body);
        throw failedPrecondition(`pull access denied for ${ref.registry}/${ref.repository}: unauthorized (wrong or missing credentials)`);
      }
      if (response.statusCode >= 500 || response.statusCode === 429) {
        await drain(response.body);
        throw unavailable(`${endpoint.host} answered HTTP ${response.statusCode}`);
      }
      if (response.statusCode !== 200) {
        await drain(response.body);
        throw failedPrecondition(`${endpoint.host} answered HTTP ${response.statusCode} for ${what}`);
      }
      const body = await readLimited(response.body, MAX_MANIFEST_BYTES, what);
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      if (reference.startsWith('sha256:') && digest !== reference) {
        throw failedPrecondition(`${what}: the registry's content has digest ${digest}`);
      }
      return { body, contentType: String(response.headers['content-type'] ?? ''), digest, endpoint };
    });
  }

  /** GETs a small blob (a config) whole, verified against its descriptor. */
  async fetchSmallBlob(ref: ImageReference, descriptor: Descriptor, creds?: RegistryCredentials, preferred?: RegistryEndpoint, signal?: AbortSignal): Promise<Buffer> {
    if (descriptor.size > MAX_MANIFEST_BYTES * 4) throw invalidArgument(`blob ${descriptor.digest} is too large to be a config (${descriptor.size} bytes)`);
    return this.overEndpoints(ref.registry, `blob ${descriptor.digest}`, async (endpoint) => {
      const stream = await this.openBlobAt(endpoint, ref, descriptor, creds, signal);
      const data = await readLimited(stream.body as Dispatcher.ResponseData['body'], descriptor.size, `blob ${descriptor.digest}`);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      if (digest !== descriptor.digest || data.length !== descriptor.size) {
        throw failedPrecondition(`blob ${descriptor.digest}: the registry's content has digest ${digest} and ${data.length} bytes`);
      }
      return data;
    }, preferred);
  }

  private async openBlobAt(endpoint: RegistryEndpoint, ref: ImageReference, descriptor: Descriptor, creds?: RegistryCredentials, signal?: AbortSignal): Promise<BlobStream> {
    const response = await this.send(endpoint, ref.registry, ref.repository, creds, 'GET', `/${ref.repository}/blobs/${descriptor.digest}`, {}, signal);
    if (response.statusCode === 404) {
      await drain(response.body);
      throw notFound(`blob ${descriptor.digest} not found in ${ref.registry}/${ref.repository}`);
    }
    if (response.statusCode === 401 || response.statusCode === 403) {
      await drain(response.body);
      throw failedPrecondition(`pull access denied for ${ref.registry}/${ref.repository}: unauthorized`);
    }
    if (response.statusCode !== 200) {
      await drain(response.body);
      throw unavailable(`${endpoint.host} answered HTTP ${response.statusCode} for blob ${descriptor.digest}`);
    }
    const length = Number(response.headers['content-length']);
    return { body: response.body, length: Number.isFinite(length) ? length : undefined, endpoint };
  }

  /** Opens a blob for streaming; the caller verifies digest and size as it reads. */
  async openBlob(ref: ImageReference, descriptor: Descriptor, creds?: RegistryCredentials, preferred?: RegistryEndpoint, signal?: AbortSignal): Promise<BlobStream> {
    return this.overEndpoints(ref.registry, `blob ${descriptor.digest}`, (endpoint) => this.openBlobAt(endpoint, ref, descriptor, creds, signal), preferred);
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((agent) => agent.close().catch(() => undefined)));
    this.agents.clear();
  }
}
