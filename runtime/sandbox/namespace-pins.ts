// A pod's network, IPC and UTS namespaces, pinned as files under
// <namespace_dir>/{net,ipc,uts}/<pod id> by the native addon (no pause
// container holds them). A pod with its own user namespace (hostUsers: false)
// has it pinned at <namespace_dir>/user/<pod id>, and its other namespaces are
// created inside it, so they belong to it. The pin dir is a private mount so
// the pins' bind mounts never propagate to the host's other mount namespaces.
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BerthNative, NativeError } from '../../native';
import { describeError, internal, invalidArgument } from '../errors';
import type { PodSysctl } from './sysctls';
import type { PodIdMappings } from './user-namespace-options';

const KINDS = ['net', 'ipc', 'uts', 'user'] as const;
/** Every pin directory: the kinds made with the pod, and its shared PID namespace (pinned from its holder). */
const PIN_DIRS = [...KINDS, 'pid'] as const;

/** Where a pod's namespaces are pinned; "" where the pod shares the host's. */
export interface PodNamespacePaths {
  net: string;
  ipc: string;
  uts: string;
  user: string;
}

export class NamespacePins {
  private dirReady = false;

  constructor(
    private readonly native: BerthNative,
    /** The configured sandbox.namespace_dir. */
    private readonly dir: string,
  ) {}

  /** The pin path of a pod's namespace of this kind. */
  pathOf(kind: (typeof PIN_DIRS)[number], podId: string): string {
    return join(this.dir, kind, podId);
  }

  /**
   * Creates the pod's namespaces (inside its own user namespace, with these
   * mappings, when paths.user is set), sets its host name and sysctls inside
   * them, and pins them.
   */
  create(paths: PodNamespacePaths, hostname: string, sysctls: readonly PodSysctl[], mappings?: PodIdMappings): void {
    this.ensureDir();
    const options = {
      net: paths.net,
      ipc: paths.ipc,
      uts: paths.uts,
      hostname: paths.uts ? hostname : '',
      sysctls: sysctls.map((s): [string, string] => [s.procPath, s.value]),
      loopbackUp: Boolean(paths.net),
    };
    try {
      if (paths.user && mappings) {
        this.native.createPodUserNamespace({ ...options, user: paths.user, uidMappings: [mappings.uids], gidMappings: [mappings.gids] });
      } else {
        this.native.createPodNamespaces(options);
      }
    } catch (err) {
      const e = err as NativeError;
      // A sysctl the validator allows may still be missing from this kernel (a module not loaded).
      if (e.syscall === 'open' && e.path?.startsWith('/proc/sys/')) {
        throw invalidArgument(`config.linux.sysctls: ${e.path.slice('/proc/sys/'.length).replace(/\//g, '.')} does not exist in the pod's namespaces`);
      }
      throw internal(`creating the pod's namespaces: ${describeError(err)}`);
    }
  }

  /**
   * Pins the PID namespace of the pod's holder process at `path` and returns
   * the namespace's inode (recorded, and compared before every use). The
   * caller checks that `pid` is still its holder afterwards: then the pinned
   * namespace is the holder's, not a stranger's that took a reused pid.
   */
  pinPid(holderPid: number, path: string): number {
    this.ensureDir();
    try {
      return this.native.pinPidNamespace(holderPid, path).inode;
    } catch (err) {
      throw internal(`pinning the pod's PID namespace (holder ${holderPid}): ${describeError(err)}`);
    }
  }

  /** Whether the pin at `path` holds the PID namespace of this inode. */
  holdsPidNamespace(path: string, inode: number): boolean {
    try {
      const held = this.native.namespaceIdentity(path);
      return held.type === 'pid' && held.inode === inode;
    } catch {
      return false;
    }
  }

  /** Unpins one namespace; a pin already gone is fine. */
  unpin(path: string): void {
    this.native.unpinNamespace(path);
  }

  /** Whether every pin of the pod still holds a namespace (after a reboot the files remain but hold nothing). */
  allPinned(paths: PodNamespacePaths): boolean {
    return KINDS.every((kind) => !paths[kind] || this.native.namespaceFileState(paths[kind]) === 'pinned');
  }

  /**
   * Unpins every file in the pin dir that no known pod claims (left by a crash
   * before the journal row was written, or by a pod whose row was lost).
   * Returns what it unpinned and what it could not.
   */
  unpinOrphans(known: ReadonlySet<string>): { unpinned: string[]; failures: { path: string; error: string }[] } {
    this.ensureDir();
    const unpinned: string[] = [];
    const failures: { path: string; error: string }[] = [];
    for (const kind of PIN_DIRS) {
      let names: string[];
      try {
        names = readdirSync(join(this.dir, kind));
      } catch {
        continue;
      }
      for (const name of names) {
        const path = join(this.dir, kind, name);
        if (known.has(path)) continue;
        try {
          this.unpin(path);
          unpinned.push(path);
        } catch (err) {
          failures.push({ path, error: describeError(err) });
        }
      }
    }
    return { unpinned, failures };
  }

  private ensureDir(): void {
    if (this.dirReady) return;
    for (const kind of PIN_DIRS) mkdirSync(join(this.dir, kind), { recursive: true, mode: 0o700 });
    try {
      this.native.makePrivateMount(this.dir);
    } catch (err) {
      throw internal(`making ${this.dir} a private mount for namespace pins: ${describeError(err)}`);
    }
    this.dirReady = true;
  }
}
