// Starts a real berthd in a child process with its own temporary root, state,
// socket and config, for integration tests. Each test file gets its own
// daemon, so files never share state. berthd is started through the build's
// launcher (dist/berthd: Node.js with berthd's V8 flags), as the README's
// quick start and the installed service start it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadNative } from '../../native';
import { join, resolve } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { CriClient } from './cri-client';
import { DEV_CODE_CACHE_PATH, DEV_ENTRY_PATH, DEV_LAUNCHER_PATH, DEV_SNAPSHOT_PATH, writeLauncher } from '../../shim/berthd-launcher';
import { BUNDLE_PATH, PACKAGE_ROOT, readBundle } from '../../shim/bundle/bundle-file';
import { writeBundle } from '../../shim/bundle/bundle-build';

type TomlTable = { [key: string]: unknown };

/** Detaches every mount under dir (deepest first): berthd makes its namespace dir a private mount of its own. */
export function unmountBelow(dir: string): void {
  const native = loadNative();
  const mountPoints = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mountPoint): mountPoint is string => !!mountPoint && (mountPoint === dir || mountPoint.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mountPoints) {
    try {
      native.umount2(mountPoint, native.mountFlags.MNT_DETACH);
    } catch {
      // already gone
    }
  }
}

function mergeTables(base: TomlTable, over: TomlTable): TomlTable {
  const out: TomlTable = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    const bothTables = [current, value].every((v) => typeof v === 'object' && v !== null && !Array.isArray(v));
    out[key] = bothTables ? mergeTables(current as TomlTable, value as TomlTable) : value;
  }
  return out;
}

export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/**
 * The bundle's runner, what every launcher starts, with the bundle rebuilt first when a tsc-only build left it
 * older than the compiled modules (`npm run build` writes it too): the tests run berthd and its commands as the
 * bundle, and a runner that fell back to the compiled modules would hide a broken bundle.
 */
function currentBundleEntry(): string {
  const bundle = readBundle(BUNDLE_PATH, PACKAGE_ROOT);
  if ('stale' in bundle) writeBundle(PACKAGE_ROOT);
  return DEV_ENTRY_PATH;
}

/** berthd as `node BERTHD_ENTRY ...` (no V8 flags, no code cache): its commands, or a daemon a test starts by hand. */
export const BERTHD_ENTRY = currentBundleEntry();

/** dist/berthd, written here when a tsc-only build left it missing or stale (`npm run build` writes it too). */
export function berthdLauncher(): string {
  return writeLauncher(DEV_LAUNCHER_PATH, BERTHD_ENTRY, { codeCache: DEV_CODE_CACHE_PATH, snapshot: DEV_SNAPSHOT_PATH });
}

export interface BerthdOptions {
  /** Extra TOML appended to the generated config (may add tables). */
  extraToml?: string;
  /** Top-level scalar keys put before any table, e.g. { log_level: 'debug' }. */
  topLevel?: Record<string, string | number | boolean>;
  /** Keep the temp dir after stop() (for post-mortems). */
  keepDir?: boolean;
  /** The command that runs berthd (default: the build's launcher, dist/berthd), e.g. an installed launcher. */
  command?: string[];
  /** Extra environment of berthd (e.g. NOTIFY_SOCKET). */
  env?: Record<string, string>;
}

export class BerthdProcess {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly socket: string;
  readonly configPath: string;
  readonly logPath: string;
  child?: ChildProcess;
  client!: CriClient;
  private logChunks: Buffer[] = [];

  constructor(private readonly options: BerthdOptions = {}) {
    this.dir = mkdtempSync('/tmp/berth-test-');
    this.root = join(this.dir, 'root');
    this.state = join(this.dir, 'state');
    this.socket = join(this.dir, 'berth.sock');
    this.configPath = join(this.dir, 'berth.toml');
    this.logPath = join(this.dir, 'berthd.log');
    mkdirSync(this.root, { recursive: true });
    // Everything berthd touches on the host lives under the temp dir unless a
    // test says otherwise, so a test never writes into /etc/cni/net.d or pins
    // namespaces where a real berthd keeps them.
    const base: TomlTable = {
      root: this.root,
      state: this.state,
      socket: this.socket,
      log_level: 'debug',
      ...(options.topLevel ?? {}),
      metrics: { port: 0 },
      streaming: { port: 0 },
      oci: { runtimes: { runc: { root: join(this.state, 'runc') }, crun: { root: join(this.state, 'crun') } } },
      sandbox: { namespace_dir: join(this.dir, 'ns') },
      cni: { conf_dir: join(this.dir, 'cni', 'net.d'), cache_dir: join(this.dir, 'cni', 'cache') },
    };
    let text: string;
    try {
      text = stringifyToml(mergeTables(base, parseToml(options.extraToml ?? '') as TomlTable));
    } catch {
      // Not TOML (a test of berthd's own TOML errors): hand it over as written.
      text = `${stringifyToml(base)}\n${options.extraToml ?? ''}`;
    }
    writeFileSync(this.configPath, `${text}\n`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Everything berthd wrote to stdout/stderr so far. */
  logs(): string {
    return Buffer.concat(this.logChunks).toString('utf8');
  }

  /** pollMs: how often readiness is asked (the restart benchmark asks often). */
  async start(timeoutMs = 20_000, pollMs = 50): Promise<void> {
    const [file, ...args] = this.options.command ?? [berthdLauncher()];
    const child = spawn(file, [...args, '--config', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(this.options.env ?? {}) },
    });
    this.child = child;
    child.stdout!.on('data', (b: Buffer) => this.logChunks.push(b));
    child.stderr!.on('data', (b: Buffer) => this.logChunks.push(b));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code, signal) => reject(new Error(`berthd exited early (code ${code}, signal ${signal}):\n${this.logs()}`))),
    );
    const deadline = Date.now() + timeoutMs;
    this.client = new CriClient(this.socket);
    const ready = (async () => {
      for (;;) {
        if (existsSync(this.socket)) {
          try {
            await this.client.call('Version', { version: '0.1.0' }, { timeoutMs: 2000 });
            return;
          } catch {
            // not yet
          }
        }
        if (Date.now() > deadline) throw new Error(`berthd did not answer within ${timeoutMs} ms:\n${this.logs()}`);
        await new Promise((r) => setTimeout(r, pollMs));
      }
    })();
    await Promise.race([ready, exited]);
    exited.catch(() => undefined);
  }

  /** Sends a signal without waiting for anything (SIGHUP: reload). */
  signal(signal: NodeJS.Signals): void {
    if (!this.child || this.child.exitCode !== null) throw new Error('berthd is not running');
    this.child.kill(signal);
  }

  /** Waits until berthd's output matches `pattern` (checked as output arrives); rejects after timeoutMs with the output so far. */
  async waitForLog(pattern: RegExp, timeoutMs = 20_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.logs().slice(from);
      const match = pattern.exec(text);
      if (match) return match[0];
      if (Date.now() > deadline) throw new Error(`berthd never logged ${pattern} within ${timeoutMs} ms:\n${text}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends a signal and waits for the process to exit; resolves with its exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    const child = this.child;
    this.client?.close();
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  /** Stops berthd (SIGTERM) and removes its temp dir. */
  async cleanup(): Promise<void> {
    await this.stop();
    if (this.options.keepDir) return;
    unmountBelow(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startBerthd(options: BerthdOptions = {}): Promise<BerthdProcess> {
  const berthd = new BerthdProcess(options);
  await berthd.start();
  return berthd;
}
