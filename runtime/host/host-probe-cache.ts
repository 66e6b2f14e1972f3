// What berthd learnt by running the host's programs (conmon, runc, crun,
// criu): their --version output and criu's `check`, kept in the state dir and
// keyed by each binary's identity (device, inode, size, mtime), so a restart
// runs none of them again unless a binary changed. The state dir is volatile
// (a tmpfs under /run): a reboot, possibly into another kernel, starts afresh,
// and what depends on the kernel (criu's check) is keyed by its release too.
// Facts found by trying the kernel itself (which mounts it can make) are kept
// per boot: the kernel does not change until the next one.
import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { VersionCache } from './binaries';

/** How one run of a program ended: its exit status (null: killed or never ran), what it printed, why it could not run. */
export interface CommandOutcome {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Set when the program could not be run at all (ENOENT, EACCES). */
  error?: string;
  /** Killed (at its deadline, or by a signal). */
  timedOut?: boolean;
}

interface StoredOutcome {
  identity: string;
  outcome: CommandOutcome;
}

interface CacheFile {
  versions: Record<string, { identity: string; versionText: string }>;
  outcomes: Record<string, StoredOutcome>;
  boot: Record<string, { bootId: string; value: unknown }>;
}

const BOOT_ID = '/proc/sys/kernel/random/boot_id';

function currentBootId(): string {
  try {
    return readFileSync(BOOT_ID, 'utf8').trim();
  } catch {
    return '';
  }
}

const MAX_OUTPUT_BYTES = 256 * 1024;

/** dev:ino:size:mtime of a file, "" when it cannot be stat'ed. */
export async function fileIdentity(path: string): Promise<string> {
  try {
    const st = await fsp.stat(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '';
  }
}

/** Runs a program without blocking the event loop, bounded in time and output. */
export function runProgram(path: string, args: readonly string[], timeoutMs: number): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    execFile(path, args, { timeout: timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ status: 0, stdout, stderr });
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number') return resolve({ status: code, stdout, stderr });
      // A string code is the spawn's own failure (ENOENT, EACCES); none is a kill (the deadline, a signal).
      if (typeof code === 'string') return resolve({ status: null, stdout: '', stderr: '', error: err.message });
      resolve({ status: null, stdout: stdout ?? '', stderr: stderr ?? '', timedOut: Boolean((err as { killed?: boolean }).killed) });
    });
  });
}

export class HostProbeCache {
  /** `--version` first lines by binary path (binaries.ts's probeBinary reads and fills it). */
  readonly versions: VersionCache;
  private readonly outcomes: Map<string, StoredOutcome>;
  private readonly boot: Map<string, { bootId: string; value: unknown }>;
  private savedText: string;

  private constructor(private readonly file: string | undefined, stored: CacheFile, loadedText: string) {
    this.versions = new Map(Object.entries(stored.versions));
    this.outcomes = new Map(Object.entries(stored.outcomes));
    this.boot = new Map(Object.entries(stored.boot));
    this.savedText = loadedText;
  }

  /** A cache that lives only in this process (doctor from the command line, tests). */
  static inMemory(): HostProbeCache {
    return new HostProbeCache(undefined, { versions: {}, outcomes: {}, boot: {} }, '');
  }

  /** The cache kept at `file`; an unreadable or malformed file is an empty cache (it is rebuilt). */
  static load(file: string): HostProbeCache {
    let text = '';
    let stored: CacheFile = { versions: {}, outcomes: {}, boot: {} };
    try {
      text = readFileSync(file, 'utf8');
      const parsed = JSON.parse(text) as Partial<CacheFile>;
      if (parsed && typeof parsed.versions === 'object' && typeof parsed.outcomes === 'object' && typeof parsed.boot === 'object') {
        stored = { versions: parsed.versions ?? {}, outcomes: parsed.outcomes ?? {}, boot: parsed.boot ?? {} };
      }
    } catch {
      // first start, or a file from an older berth: start afresh
    }
    return new HostProbeCache(file, stored, text);
  }

  /**
   * `path args` run once per identity of the binary (and per `scope`, e.g. the
   * kernel release for criu's check). A run that could not start or was killed
   * is not kept: it is tried again next time.
   */
  async run(path: string, args: readonly string[], options: { timeoutMs: number; scope?: string }): Promise<CommandOutcome> {
    const key = [path, ...args, ...(options.scope ? [`@${options.scope}`] : [])].join(' ');
    const identity = await fileIdentity(path);
    const known = this.outcomes.get(key);
    if (identity && known?.identity === identity) return known.outcome;
    const outcome = await runProgram(path, args, options.timeoutMs);
    if (identity && outcome.status !== null) this.outcomes.set(key, { identity, outcome });
    else this.outcomes.delete(key);
    return outcome;
  }

  /** A fact found by trying this kernel: `find` runs once per boot (and per key), its answer is kept until the next boot. */
  forThisBoot<T>(key: string, find: () => T): T {
    const bootId = currentBootId();
    const known = this.boot.get(key);
    if (bootId && known?.bootId === bootId) return known.value as T;
    const value = find();
    if (bootId) this.boot.set(key, { bootId, value });
    return value;
  }

  /** Writes the cache when it changed (atomically: a crash leaves the old file or the new one). */
  async save(): Promise<void> {
    if (!this.file) return;
    const text = JSON.stringify({ versions: Object.fromEntries(this.versions), outcomes: Object.fromEntries(this.outcomes), boot: Object.fromEntries(this.boot) } satisfies CacheFile);
    if (text === this.savedText) return;
    await fsp.mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, text, { mode: 0o600 });
    await fsp.rename(tmp, this.file);
    this.savedText = text;
  }
}
