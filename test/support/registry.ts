// Starts a real OCI registry (Debian's docker-registry, distribution 2.8) on
// 127.0.0.1 with a free port and temporary storage, optionally behind basic
// (htpasswd, bcrypt) or token auth (a small token server started here that
// signs RS256 JWTs with a throwaway self-signed certificate). Stopped by PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createSign, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryOptions {
  /** 'none' (default), 'basic' (htpasswd) or 'token' (Bearer tokens from a local token server). */
  auth?: 'none' | 'basic' | 'token';
  /** Users accepted by basic or token auth (default one user "tester"/"secret-pw"). */
  users?: RegistryCredentials[];
}

export interface TestRegistry {
  /** "127.0.0.1:<port>": the registry host as it appears in image references. */
  host: string;
  /** "http://127.0.0.1:<port>". */
  url: string;
  port: number;
  /** Credentials pushes use when auth is on (the first user). */
  credentials?: RegistryCredentials;
  auth: 'none' | 'basic' | 'token';
  /** Storage directory of the registry (blobs and repositories). */
  storageDir: string;
  /** Token server URL when auth is 'token'. */
  tokenRealm?: string;
  /** Authorization header value for a push/pull of `repository` (basic or a fresh bearer token). */
  authorization(repository: string, actions?: string[]): Promise<string | undefined>;
  /** Registry log so far (for failing tests). */
  logs(): string;
  stop(): Promise<void>;
}

/** Finds a free TCP port on 127.0.0.1 (closed again before returning). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function htpasswdLine(user: RegistryCredentials): string {
  const result = spawnSync('htpasswd', ['-Bbn', user.username, user.password], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`htpasswd failed (is apache2-utils installed?): ${result.stderr || result.error?.message}`);
  return result.stdout.trim();
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

interface TokenServer {
  server: Server;
  realm: string;
  certPath: string;
  issue(subject: string, scopes: string[]): string;
}

const TOKEN_ISSUER = 'berth-test-token-issuer';
const TOKEN_SERVICE = 'berth-test-registry';

async function startTokenServer(dir: string, users: RegistryCredentials[]): Promise<TokenServer> {
  const keyPath = join(dir, 'token-key.pem');
  const certPath = join(dir, 'token-cert.pem');
  const openssl = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=berth-test-token'],
    { encoding: 'utf8' },
  );
  if (openssl.status !== 0) throw new Error(`openssl failed: ${openssl.stderr}`);
  const key = createPrivateKey(readFileSync(keyPath));
  const certDer = new X509Certificate(readFileSync(certPath)).raw;

  const issue = (subject: string, scopes: string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const access = scopes
      .map((scope) => scope.split(':'))
      .filter((parts) => parts.length >= 3)
      .map((parts) => ({ type: parts[0], name: parts.slice(1, -1).join(':'), actions: parts[parts.length - 1].split(',') }));
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = { iss: TOKEN_ISSUER, sub: subject, aud: TOKEN_SERVICE, exp: now + 600, nbf: now - 60, iat: now, jti: `${now}-${Math.random()}`, access };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(key);
    return `${signingInput}.${base64url(signature)}`;
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const header = req.headers.authorization ?? '';
    let subject = '';
    if (header.startsWith('Basic ')) {
      const [username, ...rest] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':');
      const password = rest.join(':');
      if (!users.some((u) => u.username === username && u.password === password)) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      subject = username;
    }
    // Anonymous callers get a token without access: the registry then refuses them.
    const scopes = subject ? url.searchParams.getAll('scope') : [];
    const token = issue(subject, scopes);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 600, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return { server, realm: `http://127.0.0.1:${port}/token`, certPath, issue };
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'none';
  const users = options.users ?? [{ username: 'tester', password: 'secret-pw' }];
  const dir = mkdtempSync('/tmp/berth-registry-');
  const storageDir = join(dir, 'storage');
  let tokenServer: TokenServer | undefined;
  const authLines: string[] = [];
  if (auth === 'basic') {
    writeFileSync(join(dir, 'htpasswd'), `${users.map(htpasswdLine).join('\n')}\n`);
    authLines.push('auth:', '  htpasswd:', '    realm: berth-test', `    path: ${join(dir, 'htpasswd')}`);
  } else if (auth === 'token') {
    tokenServer = await startTokenServer(dir, users);
    authLines.push(
      'auth:',
      '  token:',
      `    realm: ${tokenServer.realm}`,
      `    service: ${TOKEN_SERVICE}`,
      `    issuer: ${TOKEN_ISSUER}`,
      `    rootcertbundle: ${tokenServer.certPath}`,
    );
  }

  let child: ChildProcess | undefined;
  const logChunks: Buffer[] = [];
  // A port found free may be taken before the registry binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storageDir}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: berth-test-${process.pid}-${port}`,
      ...authLines,
      '',
    ].join('\n');
    const configPath = join(dir, 'config.yml');
    writeFileSync(configPath, config);
    logChunks.length = 0;
    child = spawn(REGISTRY_BINARY, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (b: Buffer) => logChunks.push(b));
    child.stderr!.on('data', (b: Buffer) => logChunks.push(b));
    const up = await waitForRegistry(child, port);
    if (up) {
      const started = child;
      const url = `http://127.0.0.1:${port}`;
      const credentials = auth === 'none' ? undefined : users[0];
      return {
        host: `127.0.0.1:${port}`,
        url,
        port,
        auth,
        credentials,
        storageDir,
        tokenRealm: tokenServer?.realm,
        async authorization(repository, actions = ['pull', 'push']) {
          if (!credentials) return undefined;
          if (auth === 'basic') return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
          return `Bearer ${tokenServer!.issue(credentials.username, [`repository:${repository}:${actions.join(',')}`])}`;
        },
        logs: () => Buffer.concat(logChunks).toString('utf8'),
        async stop() {
          await stopChild(started);
          if (tokenServer) {
            tokenServer.server.closeAllConnections();
            await new Promise<void>((resolve) => tokenServer!.server.close(() => resolve()));
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child);
  }
  if (tokenServer) tokenServer.server.close();
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start: ${Buffer.concat(logChunks).toString('utf8')}`);
}

async function waitForRegistry(child: ChildProcess, port: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return true;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, 5000);
  await exited;
  clearTimeout(timer);
}
