// The host as doctor sees it: every path is read under a root directory, "/"
// for this machine, a fixture tree in tests. Reads are asynchronous and capped
// (proc and sys files are small; a fixture is not trusted to be).
import { constants, promises as fsp, type Stats, type StatsFs } from 'node:fs';
import { join } from 'node:path';

const MAX_READ_BYTES = 1024 * 1024;

export class HostRoot {
  private mountTable: Promise<MountEntry[]> | undefined;

  constructor(readonly dir: string = '/') {}

  /** The real path of a host path under this root. */
  path(hostPath: string): string {
    return this.dir === '/' ? hostPath : join(this.dir, hostPath);
  }

  /** File text, or undefined when it cannot be read (missing, a directory, no permission). */
  async read(hostPath: string): Promise<string | undefined> {
    let handle: fsp.FileHandle | undefined;
    try {
      handle = await fsp.open(this.path(hostPath), constants.O_RDONLY | constants.O_NONBLOCK);
      const stat = await handle.stat();
      if (!stat.isFile()) return undefined;
      // proc and sys files are a few bytes: start small (a zeroed MiB per read was most of doctor's garbage), grow to the cap.
      let buffer = Buffer.allocUnsafe(Math.min(MAX_READ_BYTES, 64 * 1024));
      let length = 0;
      for (;;) {
        if (length === buffer.length) {
          if (buffer.length >= MAX_READ_BYTES) break;
          const grown = Buffer.allocUnsafe(Math.min(MAX_READ_BYTES, buffer.length * 4));
          buffer.copy(grown, 0, 0, length);
          buffer = grown;
        }
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      return buffer.subarray(0, length).toString('utf8');
    } catch {
      return undefined;
    } finally {
      await handle?.close();
    }
  }

  /** First line of a file, trimmed (proc/sys values). */
  async value(hostPath: string): Promise<string | undefined> {
    return (await this.read(hostPath))?.split('\n')[0].trim();
  }

  async exists(hostPath: string): Promise<boolean> {
    try {
      await fsp.lstat(this.path(hostPath));
      return true;
    } catch {
      return false;
    }
  }

  async stat(hostPath: string): Promise<Stats | undefined> {
    try {
      return await fsp.stat(this.path(hostPath));
    } catch {
      return undefined;
    }
  }

  async lstat(hostPath: string): Promise<Stats | undefined> {
    try {
      return await fsp.lstat(this.path(hostPath));
    } catch {
      return undefined;
    }
  }

  async list(hostPath: string): Promise<string[]> {
    try {
      return await fsp.readdir(this.path(hostPath));
    } catch {
      return [];
    }
  }

  /** statfs of the nearest existing directory at or above hostPath. */
  async statfs(hostPath: string): Promise<{ at: string; stats: StatsFs } | undefined> {
    let at = hostPath;
    for (;;) {
      try {
        return { at, stats: await fsp.statfs(this.path(at)) };
      } catch {
        if (at === '/' || at === '') return undefined;
        at = at.slice(0, Math.max(1, at.lastIndexOf('/')));
      }
    }
  }

  /** Mount table entries (from <root>/proc/self/mounts), read once per HostRoot: a node with pods has hundreds. */
  mounts(): Promise<MountEntry[]> {
    this.mountTable ??= this.readMounts();
    return this.mountTable;
  }

  private async readMounts(): Promise<MountEntry[]> {
    const text = (await this.read('/proc/self/mounts')) ?? '';
    return text.split('\n').filter(Boolean).map((line) => {
      const [source, mountPoint, fsType, options] = line.split(' ');
      return { source, mountPoint: unescapeMount(mountPoint ?? ''), fsType: fsType ?? '', options: (options ?? '').split(',') };
    });
  }
}

export interface MountEntry {
  source: string;
  mountPoint: string;
  fsType: string;
  options: string[];
}

function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** The mount that holds `hostPath`: the longest mount point that is a prefix of it. */
export function mountOf(mounts: MountEntry[], hostPath: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || hostPath === m.mountPoint || hostPath.startsWith(`${m.mountPoint}/`);
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}
