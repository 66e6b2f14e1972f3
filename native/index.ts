// Loads the node-addon-api addon built by `npm run build:native` (node-gyp). Every
// syscall Node cannot make goes through here; a missing build stops berthd with a
// clear message instead of a stack trace deep inside a pod start.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface Uname {
  sysname: string;
  release: string;
  version: string;
  machine: string;
  nodename: string;
}

export interface BerthNative {
  uname(): Uname;
  /** Reads a file from a thread that joined the network namespace at nsPath (e.g. /proc/thread-self/net/dev). */
  readFileInNetns(nsPath: string, file: string): Promise<string>;
  /** Effective capability mask as a decimal string (64 bits). */
  effectiveCapabilities(): string;
  /** mount(2); throws a NativeError (errno, syscall, path). */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data?: string): void;
  /** umount2(2); throws a NativeError (EINVAL: not a mount point). */
  umount2(target: string, flags?: number): void;
  mountFlags: MountFlags;
  /**
   * overlay via fsopen/fsconfig("lowerdir+")/fsmount/move_mount; lowers top-most first; `options` are further
   * overlay options ([key, value], e.g. ["redirect_dir", "nofollow"]). Throws ENOSYS/EINVAL on old kernels.
   */
  mountOverlay(lowerDirsTopFirst: string[], upperDir: string, workDir: string, target: string, readonly: boolean, options?: [string, string][]): void;
  /** mknod(2); mode includes the file type bits (fileTypes.S_IFCHR ...). */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2): sets an extended attribute without following symlinks. */
  lsetxattr(path: string, name: string, value: Buffer): void;
  /** lgetxattr(2): undefined when the attribute is absent. */
  lgetxattr(path: string, name: string): Buffer | undefined;
  fileTypes: { S_IFCHR: number; S_IFBLK: number; S_IFIFO: number };
  /** Makes `dir` a private mount point (bind onto itself when it is not one yet). */
  makePrivateMount(dir: string): void;
  /** Creates the requested namespaces in a short-lived child and pins each to its path (runtime/sandbox/namespace-pins.ts). */
  createPodNamespaces(options: PodNamespaceOptions): void;
  /** umount2(MNT_DETACH) + unlink; absent is fine. */
  unpinNamespace(path: string): void;
  namespaceFileState(path: string): 'missing' | 'file' | 'pinned';
  /**
   * A user namespace with the given maps, pinned at options.user, and the requested
   * net/ipc/uts namespaces created inside it (owned by it), each pinned; on failure
   * nothing stays pinned (native/src/userns.cc). Released with unpinNamespace.
   */
  createPodUserNamespace(options: PodUserNamespaceOptions): void;
  /** Inode of the user namespace owning the namespace file at path (ioctl NS_GET_USERNS). */
  namespaceOwner(path: string): number;
  /**
   * A detached clone of source (open_tree; with its submounts when recursive), given
   * private propagation, read-only on every mount of it when readonly, idmapped with the
   * user namespace at usernsPath when set, then attached at target (native/src/prepared_mounts.cc).
   */
  bindMountTree(source: string, target: string, options: BindMountTreeOptions): void;
  /**
   * An overlay whose lower layers are idmapped clones (overlayfs itself refuses MOUNT_ATTR_IDMAP):
   * lowers top-most first. The upper dir is used as is and keeps host ids: own its top
   * directory by the container root's host ids first. upperDir and workDir both "" for no
   * upper (read-only; a single layer without upper becomes a read-only idmapped bind of it).
   */
  mountIdmappedOverlay(lowerDirsTopFirst: string[], upperDir: string, workDir: string, target: string, readonly: boolean, usernsPath: string): void;
  /** Streaming fds (native/src/streaming_fds.cc); used by runtime/exec/. */
  consoleSocketListen(path: string): number;
  receivePtyMaster(listenFd: number, timeoutMs: number): Promise<number>;
  openPty(): { master: number; slave: number };
  setWindowSize(fd: number, rows: number, cols: number): void;
  closeFd(fd: number): void;
  /** how: 0 read, 1 write, 2 both. */
  shutdownFd(fd: number, how: 0 | 1 | 2): void;
  seqpacketConnect(path: string): number;
  /** Bytes written now; 0 when the fd would block. */
  writeNonBlocking(fd: number, data: Buffer): number;
  /** A reader thread: chunks (one packet each when seqpacket), then (null, error|null) once. */
  startFdReader(fd: number, seqpacket: boolean, onChunk: (chunk: Buffer | null, error?: string | null) => void): number;
  stopFdReader(readerId: number): void;
  /** A connected non-blocking TCP socket opened inside the network namespace at netnsPath. */
  connectInNetns(netnsPath: string, host: string, port: number, timeoutMs: number): Promise<number>;
  /**
   * posix_spawn (no fork of berthd's heap) on a pool thread of a process in a new session;
   * childFds[i] is the child's fd i: "null", "read" (child reads a pipe),
   * "write" (child writes one) or a number (that fd of berthd's). fds[i] is berthd's end (close-on-exec) or -1.
   * The child must be reaped with waitChild (native/src/monitor_spawn.cc).
   */
  spawnDetached(
    file: string,
    argv: string[],
    env: string[],
    cwd: string,
    childFds: ('null' | 'read' | 'write' | number)[],
    /** inputs[i], for a "read" fd: put into its pipe before the child starts, as far as the pipe takes it (written[i]); all of it: fds[i] is -1. */
    inputs?: (Buffer | undefined)[],
  ): Promise<{ pid: number; fds: number[]; written: number[] }>;
  /** A sealed memfd copy of an executable (close-on-exec), run through /proc/self/fd (native/src/sealed_copy.cc). */
  sealedCopy(path: string): number;
  waitChild(pid: number): Promise<{ code: number | null; signal: number | null }>;
  /**
   * Each regular file's first maxBytes as UTF-8 (null: missing, unreadable or not a regular file),
   * all read on one pool thread, opened O_NONBLOCK (native/src/small_files.cc); background: that thread
   * runs at nice 10 meanwhile (where berthd can raise it back), yielding the CPU to what callers wait on.
   */
  readSmallFiles(paths: string[], maxBytes: number, background?: boolean): Promise<(string | null)[]>;
  /** glibc's malloc_trim(0) on a pool thread: free memory of every malloc arena back to the kernel (native/src/memory_trim.cc); false when nothing went back, or not glibc. */
  releaseFreeMemory(): Promise<boolean>;
  /**
   * Reads `path` below `root` on a pool thread, following no symlink on the way and opening only a
   * regular file (O_NONBLOCK), at most maxBytes of it (native/src/rootfs_open.cc). Rejects with a
   * NativeError (ENOENT, ENOTDIR, ELOOP for a symlink on the way, EXDEV for "..", ...). `walk` picks
   * the component-by-component resolution of kernels without openat2 (for its tests).
   */
  readFileBeneath(root: string, path: string, maxBytes: number, walk?: boolean): Promise<BeneathFile>;
  /**
   * Bind-mounts the PID namespace of process `pid` onto pinPath (made as an empty file), read with its start
   * time (/proc/<pid>/stat field 22) while a pidfd shows the process alive, so both are that process's
   * even if the pid is reused right after (native/src/pid_namespace.cc). ESRCH when it is gone.
   */
  pinPidNamespace(pid: number, pinPath: string): { inode: number; startTime: string };
  /** The kind ("pid", "net", ... or "none" for a file that is no namespace) and inode of a namespace file. */
  namespaceIdentity(path: string): { type: string; inode: number };
  /**
   * The regular file dir/relPath (made 0600 when missing and create is set), every directory on the way
   * opened relative to its parent with O_NOFOLLOW (made 0755 when missing), the file with
   * O_CREAT|O_NOFOLLOW|O_NONBLOCK: ELOOP for a symlink anywhere below dir (and in dir itself unless
   * dirMayFollow), EXDEV for "..", EINVAL for a file that is not regular (native/src/log_open.cc).
   */
  prepareLogFile(dir: string, relPath: string, options: { create: boolean; dirMayFollow: boolean }): { created: boolean; dev: number; ino: number };
  /** One sd_notify datagram to a unix socket path or "@abstract" name (native/src/sd_notify.cc). */
  notifySend(socketName: string, message: string): void;
  /** A datagram socket bound to a path or "@abstract" name, for tests that play systemd. */
  notifyListen(socketName: string): number;
  /** The next datagram on a notifyListen socket, or null after timeoutMs. */
  notifyReceive(fd: number, timeoutMs: number): Promise<string | null>;
  /**
   * Calls onExit once when the process exits (a pidfd polled on the event loop:
   * no thread, no timer; the process need not be berthd's child). Returns a
   * watch id for unwatchProcessExit; throws ESRCH when it is gone already.
   * The watch does not keep the event loop alive (native/src/pid_watch.cc).
   */
  watchProcessExit(pid: number, onExit: () => void): number;
  unwatchProcessExit(watchId: number): void;
  /**
   * Sends `signal` once to every process listed in one cgroup's cgroup.procs files (one per hierarchy), on
   * a pool thread: each pid opened as a pidfd, signalled only if still listed after that (pid reuse cannot
   * redirect it), in rounds until no new pid shows up or maxRounds ran (native/src/cgroup_signal.cc).
   */
  signalCgroupProcesses(procsFiles: string[], signal: number, maxRounds: number): Promise<CgroupSignalResult>;
}

/** What signalCgroupProcesses did: pids signalled, pids still listed unsignalled, and the first failure. */
export interface CgroupSignalResult {
  signalled: number[];
  left: number[];
  rounds: number;
  error?: string;
}

/** What readFileBeneath found: a regular file's bytes, or only the kind of what is there instead. */
export type BeneathFile =
  | { type: 'file'; size: number; data: Buffer; truncated: boolean }
  | { type: 'directory' | 'symlink' | 'fifo' | 'char-device' | 'block-device' | 'socket' | 'unknown'; size: number };

export interface PodNamespaceOptions {
  /** Pin paths; "" keeps the host's namespace of that kind. */
  net: string;
  ipc: string;
  uts: string;
  /** Set in the new UTS namespace ("" leaves it). */
  hostname: string;
  /** [/proc/sys/... path, value], written inside the new namespaces. */
  sysctls: [string, string][];
  /** Bring lo up in the new network namespace. */
  loopbackUp: boolean;
}

/** One line of /proc/<pid>/{uid,gid}_map: ids [containerId, containerId+size) are host ids [hostId, hostId+size). */
export interface IdMapping {
  containerId: number;
  hostId: number;
  size: number;
}

export interface PodUserNamespaceOptions extends PodNamespaceOptions {
  /** Pin path of the user namespace (required). */
  user: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

export interface BindMountTreeOptions {
  /** Clone the submounts too (AT_RECURSIVE), and apply the attributes to each. */
  recursive: boolean;
  readonly: boolean;
  /** Idmap with this pinned user namespace; "" for none. */
  usernsPath: string;
}

/** The pod PID-namespace holder built with the addon (native/pause). */
export const PAUSE_BINARY_NAME = 'berth-pause';

/** What ExecSync runs in place of `runc exec` where it can (native/exec). */
export const EXEC_HELPER_NAME = 'berth-exec';

export interface MountFlags {
  MS_RDONLY: number;
  MS_NOSUID: number;
  MS_NODEV: number;
  MS_NOEXEC: number;
  MS_REMOUNT: number;
  MS_BIND: number;
  MS_REC: number;
  MS_PRIVATE: number;
  MS_SLAVE: number;
  MS_SHARED: number;
  MNT_DETACH: number;
  MNT_FORCE: number;
}

/** Error thrown by the addon: errno, syscall and path are set where known. */
export interface NativeError extends Error {
  errno?: number;
  syscall?: string;
  path?: string;
}

function nativeDir(): string {
  // From source (native/index.ts) the addon is at ./build; from dist/native/index.js at ../../native/build.
  const here = resolve(__dirname);
  const candidates = [here, resolve(here, '..', '..', 'native')];
  return candidates.find((dir) => existsSync(join(dir, 'binding.gyp'))) ?? here;
}

export const NATIVE_DIR = nativeDir();
export const ADDON_PATH = join(NATIVE_DIR, 'build', 'Release', 'berth_native.node');

let loaded: BerthNative | undefined;

export function loadNative(): BerthNative {
  if (loaded) return loaded;
  if (!existsSync(ADDON_PATH)) {
    throw new Error(`berth native addon not built: ${ADDON_PATH} is missing; run "npm run build:native" (needs build-essential and python3)`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded = require(ADDON_PATH) as BerthNative;
  return loaded;
}

export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;

export function hasCapability(mask: string, capability: number): boolean {
  return ((BigInt(mask) >> BigInt(capability)) & 1n) === 1n;
}
