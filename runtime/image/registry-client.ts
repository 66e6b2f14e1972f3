// An OCI distribution (v2) client over undici: manifests and blobs fetched
// from the endpoints of registry-endpoints.ts in order, authenticated by
// registry-auth.ts, redirects followed (credentials never follow one to another
// origin), bounded retries of idempotent requests, every answer verified
// against the digest it was asked for.
import { createHash } from 'node:crypto';
import { request, type Dispatcher } from 'undici';
import type { RuntimeLog } from '../common/log';
import type { RegistryHostConfig } from '../config';
import { BerthError, describeError, failedPrecondition, invalidArgument, isBerthError, notFound, unavailable } from '../errors';
import type { ImageReference } from './image-reference';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, type Descriptor } from './image-manifest';
import { configuredCredentials, RegistryAuth, type AuthScope, type RegistryCredentials } from './registry-auth';
import { RegistryEndpoints, type RegistryEndpoint } from './registry-endpoints';
import { drain, readLimited, type ResponseBody } from './registry-http';

export interface RegistryClientOptions {
  registries: Record<string, RegistryHostConfig>;
  log: RuntimeLog;
  /** Time to wait for response headers (ms). */
  headersTimeoutMs?: number;
  /** A body that makes no progress for this long fails (ms). */
  bodyTimeoutMs?: number;
  /** Attempts of each idempotent small request (manifests, tokens). */
  attempts?: number;
  /** Base delay between attempts (ms), doubled each time. */
  retryDelayMs?: number;
}

export interface FetchedManifest {
  body: Buffer;
  contentType: string;
  /** sha256 of the body, verified against the requested digest when one was asked for. */
  digest: string;
  endpoint: RegistryEndpoint;
}

export interface BlobStream {
  /** A Readable; the caller consumes or destroys it. */
  body: ResponseBody;
  endpoint: RegistryEndpoint;
}

const REDIRECT = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const sha256Of = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export class RegistryClient {
  private readonly endpoints: RegistryEndpoints;
  private readonly auth = new RegistryAuth();
  private readonly attempts: number;
  private readonly retryDelayMs: number;

  constructor(private readonly options: RegistryClientOptions) {
    this.endpoints = new RegistryEndpoints({
      registries: options.registries,
      headersTimeoutMs: options.headersTimeoutMs ?? 30_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 60_000,
    });
    this.attempts = options.attempts ?? 3;
    this.retryDelayMs = options.retryDelayMs ?? 200;
  }

  /** A pull's scope; without credentials from the request, the registry's own from the config (read now: a reload changes them). */
  private scope(endpoint: RegistryEndpoint, ref: ImageReference, credentials: RegistryCredentials | undefined): AuthScope {
    return { endpoint, registry: ref.registry, repository: ref.repository, credentials: credentials ?? configuredCredentials(this.options.registries[ref.registry]) };
  }

  /** GETs a manifest or index by tag or digest, verifying the digest when one was asked for. */
  async fetchManifest(ref: ImageReference, reference: string, creds?: RegistryCredentials): Promise<FetchedManifest> {
    const what = `manifest ${ref.registry}/${ref.repository}:${reference}`;
    return this.overEndpoints(ref.registry, what, async (endpoint) => {
      const response = await this.send(this.scope(endpoint, ref, creds), `/${ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT });
      if (response.statusCode !== 200) {
        await drain(response.body);
        if (response.statusCode === 404) throw notFound(`${ref.registry}/${ref.repository}:${reference} not found`);
        if (response.statusCode === 401 || response.statusCode === 403) {
          throw failedPrecondition(`pull access denied for ${ref.registry}/${ref.repository}: unauthorized (wrong or missing credentials)`);
        }
        if (response.statusCode >= 500 || response.statusCode === 429) throw unavailable(`${endpoint.host} answered HTTP ${response.statusCode}`);
        throw failedPrecondition(`${endpoint.host} answered HTTP ${response.statusCode} for ${what}`);
      }
      const body = await readLimited(response.body, MAX_MANIFEST_BYTES, what);
      const digest = sha256Of(body);
      if (reference.startsWith('sha256:') && digest !== reference) {
        throw failedPrecondition(`${what}: the registry's content has digest ${digest}`);
      }
      return { body, contentType: String(response.headers['content-type'] ?? ''), digest, endpoint };
    });
  }

  /** GETs a small blob (a config) whole, verified against its descriptor. */
  async fetchSmallBlob(ref: ImageReference, descriptor: Descriptor, creds?: RegistryCredentials, preferred?: RegistryEndpoint): Promise<Buffer> {
    if (descriptor.size > MAX_MANIFEST_BYTES * 4) throw invalidArgument(`blob ${descriptor.digest} is too large to be a config (${descriptor.size} bytes)`);
    return this.overEndpoints(ref.registry, `blob ${descriptor.digest}`, async (endpoint) => {
      const stream = await this.openBlobAt(this.scope(endpoint, ref, creds), descriptor);
      const data = await readLimited(stream.body, descriptor.size, `blob ${descriptor.digest}`);
      const digest = sha256Of(data);
      if (digest !== descriptor.digest || data.length !== descriptor.size) {
        throw failedPrecondition(`blob ${descriptor.digest}: the registry's content has digest ${digest} and ${data.length} bytes`);
      }
      return data;
    }, preferred);
  }

  /** Opens a blob for streaming; the caller verifies digest and size as it reads. */
  async openBlob(ref: ImageReference, descriptor: Descriptor, creds?: RegistryCredentials, preferred?: RegistryEndpoint): Promise<BlobStream> {
    const what = `blob ${descriptor.digest}`;
    return this.overEndpoints(ref.registry, what, (endpoint) => this.openBlobAt(this.scope(endpoint, ref, creds), descriptor), preferred);
  }

  async close(): Promise<void> {
    await this.endpoints.close();
  }

  private async openBlobAt(scope: AuthScope, descriptor: Descriptor): Promise<BlobStream> {
    const { endpoint, registry, repository } = scope;
    const response = await this.send(scope, `/${repository}/blobs/${descriptor.digest}`, {});
    if (response.statusCode !== 200) {
      await drain(response.body);
      if (response.statusCode === 404) throw notFound(`blob ${descriptor.digest} not found in ${registry}/${repository}`);
      if (response.statusCode === 401 || response.statusCode === 403) throw failedPrecondition(`pull access denied for ${registry}/${repository}: unauthorized`);
      throw unavailable(`${endpoint.host} answered HTTP ${response.statusCode} for blob ${descriptor.digest}`);
    }
    return { body: response.body, endpoint };
  }

  /** One GET with the auth challenge answered once and redirects followed; the caller consumes or drains the body. */
  private async send(scope: AuthScope, path: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const { endpoint } = scope;
    let authorization = this.auth.cached(scope);
    for (let answeredChallenge = false; ; answeredChallenge = true) {
      let url = `${endpoint.apiBase}${path}`;
      let response: Dispatcher.ResponseData | undefined;
      let sendAuth = true;
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const h: Record<string, string> = { 'user-agent': 'berth', ...headers };
        if (authorization && sendAuth) h.authorization = authorization;
        response = await request(url, { method: 'GET', headers: h, dispatcher: endpoint.dispatcher });
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
      await drain(response.body);
      authorization = await this.auth.answer(String(response.headers['www-authenticate'] ?? ''), scope);
    }
  }

  /** Retries network failures and 5xx/429 answers a bounded number of times. */
  private async withRetries<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    let last: unknown;
    for (let n = 0; n < this.attempts; n++) {
      try {
        return await attempt();
      } catch (err) {
        last = err;
        const retryable = !isBerthError(err) || err.kind === 'Unavailable';
        if (!retryable || n === this.attempts - 1) break;
        this.options.log.debug({ what, attempt: n + 1, err: describeError(err) }, 'registry request failed; retrying');
        await sleep(this.retryDelayMs * 2 ** n);
      }
    }
    throw last;
  }

  /** Tries each endpoint in order; the last meaningful error wins when all fail. */
  private async overEndpoints<T>(registry: string, what: string, fn: (endpoint: RegistryEndpoint) => Promise<T>, preferred?: RegistryEndpoint): Promise<T> {
    const all = this.endpoints.of(registry);
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
    if (isBerthError(last) && ordered.length === 1) throw last;
    const message = `${what} failed on every endpoint: ${errors.join('; ')}`;
    if (isBerthError(last)) throw new BerthError(last.kind, message);
    throw unavailable(message);
  }
}
