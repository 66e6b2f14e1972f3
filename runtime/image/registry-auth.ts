// Registry authentication from the CRI AuthConfig: anonymous, Basic, and
// Bearer tokens from the registry's token service (with a password or an
// identity token), cached per endpoint, repository and user. Credentials given
// for one server never go to another.
import { request, type Dispatcher } from 'undici';
import { failedPrecondition, invalidArgument, unavailable } from '../errors';
import type { RegistryHostConfig } from '../config';
import type { RegistryEndpoint } from './registry-endpoints';
import { drain, readLimited } from './registry-http';

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

/** The credentials berth's config gives a registry (image.registries."<host>"), or undefined when it gives none. */
export function configuredCredentials(host: RegistryHostConfig | undefined): RegistryCredentials | undefined {
  if (!host || !(host.username || host.auth || host.identity_token)) return undefined;
  return {
    ...(host.username ? { username: host.username, password: host.password } : {}),
    ...(host.auth ? { auth: host.auth } : {}),
    ...(host.identity_token ? { identityToken: host.identity_token } : {}),
  };
}

/** Who asks, for what: a pull of one repository through one endpoint. */
export interface AuthScope {
  endpoint: RegistryEndpoint;
  registry: string;
  repository: string;
  credentials: RegistryCredentials | undefined;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

// Registries hand out tokens for a few minutes at least; this stays well inside.
const TOKEN_TTL_MS = 50_000;

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

/** The credentials meant for this endpoint: all of them, unless they name another server. */
function credentialsFor(scope: AuthScope): RegistryCredentials | undefined {
  const creds = scope.credentials;
  if (!creds?.serverAddress) return creds;
  const server = normalizeServerAddress(creds.serverAddress);
  return server === scope.registry || server === scope.endpoint.host ? creds : undefined;
}

export class RegistryAuth {
  private readonly tokens = new Map<string, { header: string; expires: number }>();

  /** The Authorization header to send first: a token this scope got earlier, if it is still fresh. */
  cached(scope: AuthScope): string | undefined {
    const key = this.tokenKey(scope);
    const token = this.tokens.get(key);
    if (token && token.expires > Date.now()) return token.header;
    this.tokens.delete(key);
    return undefined;
  }

  /** Answers a 401's WWW-Authenticate challenge with the Authorization header to try again with. */
  async answer(challengeHeader: string, scope: AuthScope): Promise<string> {
    const challenge = parseWwwAuthenticate(challengeHeader);
    const { endpoint, repository } = scope;
    const creds = credentialsFor(scope);
    if (challenge?.scheme === 'basic') {
      const basic = basicFrom(creds);
      if (!basic) throw failedPrecondition(`pull access denied for ${repository} at ${endpoint.host}: the registry requires credentials and none were given`);
      return `Basic ${basic}`;
    }
    if (challenge?.scheme === 'bearer') {
      const header = await this.fetchToken(scope, challenge.params, creds);
      this.tokens.set(this.tokenKey(scope), { header, expires: Date.now() + TOKEN_TTL_MS });
      return header;
    }
    throw failedPrecondition(`pull access denied for ${repository} at ${endpoint.host}: unsupported authentication challenge`);
  }

  private tokenKey(scope: AuthScope): string {
    return `${scope.endpoint.apiBase}|${pullScope(scope.repository)}|${usernameFrom(scope.credentials) ?? ''}`;
  }

  private async fetchToken(scope: AuthScope, params: Record<string, string>, creds: RegistryCredentials | undefined): Promise<string> {
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const { endpoint } = scope;
    const realm = params.realm;
    if (!realm || !/^https?:\/\//.test(realm)) throw failedPrecondition(`${endpoint.host} asked for a bearer token without a usable realm`);
    const url = new URL(realm);
    const scopes = params.scope ? params.scope.split(' ') : [pullScope(scope.repository)];
    let response: Dispatcher.ResponseData;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'berth', scope: scopes.join(' ') });
      if (params.service) form.set('service', params.service);
      response = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'berth' },
        body: form.toString(),
        dispatcher: endpoint.dispatcher,
      });
    } else {
      if (params.service) url.searchParams.set('service', params.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const basic = basicFrom(creds);
      response = await request(url, {
        method: 'GET',
        headers: { 'user-agent': 'berth', ...(basic ? { authorization: `Basic ${basic}` } : {}) },
        dispatcher: endpoint.dispatcher,
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
}

function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
