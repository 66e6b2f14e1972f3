// The container model: create/start/stop/remove/status/list/update/exec of
// containers run by an OCI runtime under conmon, state in SQLite, recovery at
// start. One lock per container id; nothing global around slow work.
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, readFileSync, rmSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerResources__Output } from '../../cri-proto/generated/runtime/v1/LinuxContainerResources';
import type { BerthConfig } from '../config';
import { alreadyExists, deadlineExceeded, describeError, failedPrecondition, internal, isBerthError, notFound } from '../errors';
import type { ContainerEventPublisher, ContainerEventType } from '../events/event-types';
import type { HostFacts } from '../host/host-facts';
import type { ContainerImageSource, RootfsMounter } from '../image/image-types';
import { Conmon, conmonFiles, isConmonOf, killQuietly, readExit, tryReadPidFile, type PendingConmon } from '../oci/conmon';
import { OciRuntime, type OciCallObserver, type OciProcess } from '../oci/oci-runtime';
import type { PodContainerHooks, SandboxLookup } from '../sandbox/sandbox-types';
import type { ContainerLookup, ContainerState, ContainerView } from './container-types';
import { ContainerStore, type ContainerRecord } from './container-store';
import { buildSpec, execProcess, ociResources, type OciSpec } from './oci-spec';
import { confineLogPath } from './rootfs-path';

export interface ContainerLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ContainersOptions {
  config: BerthConfig;
  host: HostFacts;
  store: ContainerStore;
  log: ContainerLog;
  sandboxes: SandboxLookup;
  images: ContainerImageSource;
  rootfs: RootfsMounter;
  events?: ContainerEventPublisher;
  /** Keeps an image's layers on disk while a container uses them (the image store). */
  layerHolds?: { holdLayers(holder: string, imageId: string): void; releaseLayers(holder: string): Promise<void> };
  /** Cgroup path relative to the hierarchies' root for a spec's cgroupsPath (systemd slices expanded). */
  cgroupRelativePath?: (cgroupsPath: string) => string;
  /** Latency of each OCI runtime and conmon call. */
  observeOciCall?: OciCallObserver;
}

export interface ContainerFilterOptions {
  id?: string;
  state?: ContainerState;
  podSandboxId?: string;
  labelSelector?: Record<string, string>;
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** A container as the status call reports it: the view plus what only ContainerStatus shows. */
export interface ContainerDetail extends ContainerView {
  reason: string;
  message: string;
  logPath: string;
  spec: OciSpec | undefined;
  /** uid/gid/supplemental groups the init process runs as. */
  user: { uid: number; gid: number; additionalGids: number[] } | undefined;
  resources: LinuxContainerResources__Output | null;
  stopSignal: string;
}

const nowNs = (): string => (BigInt(Date.now()) * 1_000_000n).toString();
const msToNs = (ms: number): string => (BigInt(Math.floor(ms * 1000)) * 1000n).toString();
/** How often a waiter looks for itself, should a monitor die without an exit file (no event comes then). */
const EXIT_SAFETY_NET_MS = 250;

class IdLocks {
  private readonly tails = new Map<string, Promise<void>>();
  async with<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.tails.set(id, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(id) === tail) this.tails.delete(id);
    }
  }
}

export class Containers implements ContainerLookup, PodContainerHooks {
  private readonly records = new Map<string, ContainerRecord>();
  private readonly locks = new IdLocks();
  private readonly runtimes = new Map<string, OciRuntime>();
  private readonly conmon: Conmon;
  private readonly exitDir: string;
  private readonly socketDir: string;
  private readonly containersDir: string;
  private watcher: FSWatcher | undefined;
  private closed = false;
  /** Woken when conmon writes a container's exit file (keyed by container id). */
  private readonly exitWakers = new Map<string, Set<() => void>>();

  constructor(private readonly opts: ContainersOptions) {
    const { config, host } = opts;
    for (const [handler, rt] of Object.entries(config.oci.runtimes)) {
      const facts = host.ociRuntimes[handler];
      const path = facts && 'path' in facts ? facts.path : rt.path;
      this.runtimes.set(handler, new OciRuntime({ handler, path, root: rt.root, systemdCgroup: config.cgroup.driver === 'systemd', observe: opts.observeOciCall }));
    }
    this.conmon = new Conmon('path' in host.conmon ? host.conmon.path : config.oci.conmon);
    this.exitDir = join(config.state, 'exits');
    this.socketDir = join(config.state, 'attach');
    this.containersDir = join(config.root, 'containers');
    for (const dir of [this.exitDir, this.socketDir, this.containersDir]) mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const record of opts.store.all()) this.records.set(record.id, record);
  }

  // ---- lookup (streaming, stats, events) ----

  get(idOrPrefix: string): ContainerView | undefined {
    const record = this.find(idOrPrefix);
    return record ? this.view(this.refresh(record)) : undefined;
  }

  list(): ContainerView[] {
    return [...this.records.values()].filter((r) => r.phase !== 'creating' && r.phase !== 'removing').map((r) => this.view(this.refresh(r)));
  }

  /** The OCI runtime of a handler name, for callers running `runtime exec` themselves. */
  runtime(handler: string): OciRuntime {
    const rt = this.runtimes.get(handler);
    if (!rt) throw failedPrecondition(`runtime handler "${handler}" is not configured`);
    return rt;
  }

  /** The process spec an interactive exec should run: the container's env, cwd, user and capabilities. */
  execProcessSpec(idOrPrefix: string, cmd: string[], tty: boolean): OciProcess {
    const record = this.require(idOrPrefix);
    if (!record.specJson) throw failedPrecondition(`container ${record.id} has no spec yet`);
    return execProcess(JSON.parse(record.specJson) as OciSpec, cmd, tty);
  }

  /** Conmon's attach socket (SOCK_SEQPACKET) of a running container. */
  attachSocketPath(idOrPrefix: string): string {
    return conmonFiles.attachSocket(this.socketDir, this.require(idOrPrefix).id);
  }

  /** Resizes the container's terminal through conmon's control fifo. */
  resizeTerminal(idOrPrefix: string, height: number, width: number): void {
    this.conmon.resize(this.require(idOrPrefix).dir, height, width);
  }

  detail(idOrPrefix: string): ContainerDetail {
    const record = this.refresh(this.require(idOrPrefix));
    const spec = record.specJson ? (JSON.parse(record.specJson) as OciSpec) : undefined;
    return {
      ...this.view(record),
      reason: record.reason,
      message: record.message,
      logPath: record.logPath,
      spec,
      user: spec ? { uid: spec.process.user.uid, gid: spec.process.user.gid, additionalGids: spec.process.user.additionalGids ?? [] } : undefined,
      resources: record.resourcesJson ? (JSON.parse(record.resourcesJson) as LinuxContainerResources__Output) : null,
      stopSignal: record.stopSignal,
    };
  }

  filter(filter: ContainerFilterOptions): ContainerView[] {
    return this.list().filter((c) => {
      if (filter.id && !c.id.startsWith(filter.id)) return false;
      if (filter.state && c.state !== filter.state) return false;
      if (filter.podSandboxId && !c.podSandboxId.startsWith(filter.podSandboxId)) return false;
      for (const [k, v] of Object.entries(filter.labelSelector ?? {})) if ((c.config.labels ?? {})[k] !== v) return false;
      return true;
    });
  }

  // ---- lifecycle ----

  async create(podSandboxId: string, config: ContainerConfig__Output): Promise<string> {
    const sandbox = this.opts.sandboxes.get(podSandboxId);
    if (!sandbox) throw notFound(`pod sandbox ${podSandboxId} not found`);
    if (sandbox.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
    const name = config.metadata?.name ?? '';
    const attempt = config.metadata?.attempt ?? 0;
    for (const other of this.records.values()) {
      if (other.podSandboxId === sandbox.id && other.name === name && other.attempt === attempt && other.phase !== 'removing') {
        throw alreadyExists(`container "${name}" attempt ${attempt} already exists in pod ${sandbox.id} as ${other.id}`);
      }
    }
    const handler = sandbox.runtimeHandler || this.opts.config.oci.default_runtime;
    const runtime = this.runtime(handler);
    const cg = this.opts.host.cgroup;
    if (/crun$/.test(runtime.path) && cg.mode === 'hybrid' && cg.v2Controllers.length > 0) {
      // crun refuses hybrid hosts while the cgroup2 side has controllers enabled; say so before creating anything.
      throw failedPrecondition(
        `runtime handler "${handler}" (crun) cannot run on this hybrid cgroup host while controllers are enabled on the cgroup2 side (${cg.unifiedMount}: ${cg.v2Controllers.join(', ')}); use runc, or mount those controllers as cgroup v1`,
      );
    }
    const logDirectory = sandbox.logDirectory || sandbox.config.log_directory || '';
    const imageForContainer = this.opts.images.forContainer(config.image?.image ?? '');
    const id = randomBytes(32).toString('hex');
    const dir = join(this.containersDir, id);
    const logPath = logDirectory && config.log_path ? confineLogPath(logDirectory, config.log_path) : join(dir, 'console.log');

    let targetPidNsPath: string | undefined;
    const nsOptions = config.linux?.security_context?.namespace_options;
    if (nsOptions?.pid === 'TARGET') {
      const target = this.find(nsOptions.target_id);
      const targetView = target ? this.view(this.refresh(target)) : undefined;
      if (!targetView || targetView.state !== 'CONTAINER_RUNNING' || !targetView.pid) {
        throw failedPrecondition(`linux.security_context.namespace_options.target_id: container "${nsOptions.target_id}" is not running`);
      }
      targetPidNsPath = `/proc/${targetView.pid}/ns/pid`;
    }

    const record: ContainerRecord = {
      id,
      podSandboxId: sandbox.id,
      name,
      attempt,
      phase: 'creating',
      configJson: JSON.stringify(config),
      imageRef: config.image?.image ?? '',
      imageId: imageForContainer.image.id,
      runtimeHandler: handler,
      dir,
      logPath,
      createdAt: nowNs(),
      startedAt: '0',
      finishedAt: '0',
      exitCode: 0,
      reason: '',
      message: '',
      pid: 0,
      conmonPid: 0,
      specJson: '',
      stopSignal: 'SIGTERM',
      cgroupsPath: '',
      resourcesJson: JSON.stringify(config.linux?.resources ?? null),
    };
    // Recorded before the first host resource, so a crash from here on is undone at the next start.
    this.records.set(id, record);
    this.opts.store.save(record);

    return this.locks.with(id, async () => {
      let pending: PendingConmon | undefined;
      let logCreatedByConmon = false;
      try {
        mkdirSync(join(dir, 'rootfs'), { recursive: true, mode: 0o700 });
        mkdirSync(dirname(logPath), { recursive: true, mode: 0o755 });
        logCreatedByConmon = !existsSync(logPath);
        // Started first: conmon's own start-up runs while the rootfs and config.json are made.
        pending = this.conmon.prepare({
          id,
          bundleDir: dir,
          logPath,
          exitDir: this.exitDir,
          socketDir: this.socketDir,
          runtime,
          terminal: config.tty,
          stdin: config.stdin,
          stdinOnce: config.stdin_once,
        });
        this.opts.layerHolds?.holdLayers(id, imageForContainer.image.id);
        for (const sub of ['upper', 'work']) mkdirSync(join(dir, sub), { mode: 0o700 });
        shapeUpperLikeImageRoot(join(dir, 'upper'), imageForContainer.layerDirs);
        const rootfs = join(dir, 'rootfs');
        this.opts.rootfs.mount({ layerDirs: imageForContainer.layerDirs, upperDir: join(dir, 'upper'), workDir: join(dir, 'work'), target: rootfs });
        const built = buildSpec({
          id,
          config,
          sandbox,
          image: imageForContainer.image,
          rootfs,
          host: this.opts.host,
          cgroupDriver: this.opts.config.cgroup.driver,
          targetPidNsPath,
          seccompDefaultProfilePath: this.opts.config.container.seccomp_default_profile,
        });
        for (const warning of built.warnings) this.opts.log.warn({ id, name }, warning);
        const specJson = JSON.stringify(built.spec);
        writeFileSync(join(dir, 'config.json'), specJson);
        record.specJson = specJson;
        record.stopSignal = built.stopSignal;
        record.cgroupsPath = built.spec.linux.cgroupsPath;
        // Saved with the created phase below: undoing a crash from here needs only what the first save holds.

        const starting = pending;
        pending = undefined;
        const created = await starting.run();
        record.pid = created.pid;
        record.conmonPid = created.conmonPid;
        record.phase = 'created';
        this.opts.store.save(record);
      } catch (err) {
        if (pending) {
          pending.abandon();
          // conmon opened (created) the log file before it was stopped; a container never created has no log.
          if (logCreatedByConmon) rmSync(logPath, { force: true });
        }
        this.opts.log.warn({ id, err: describeError(err) }, 'container create failed; undoing');
        await this.undo(record).catch((undoErr) => this.opts.log.error({ id, err: describeError(undoErr) }, 'undo of a failed create failed; retried at next start'));
        if (isBerthError(err)) throw err;
        throw internal(`create container: ${describeError(err)}`, err);
      }
      this.opts.log.info({ id, pod: sandbox.id, name, handler }, 'container created');
      this.publish('CONTAINER_CREATED_EVENT', record);
      return id;
    });
  }

  async start(idOrPrefix: string): Promise<void> {
    const id = this.require(idOrPrefix).id;
    await this.locks.with(id, async () => {
      const record = this.refresh(this.require(id));
      if (record.phase !== 'created') throw failedPrecondition(`container ${id} is ${this.stateOf(record)}, not created`);
      const exit = this.exitWatch(record);
      try {
        await this.runtime(record.runtimeHandler).start(id, exit.exited);
      } catch (err) {
        record.phase = 'exited';
        record.finishedAt = nowNs();
        record.exitCode = 128;
        record.reason = 'StartError';
        record.message = describeError(err);
        this.opts.store.save(record);
        await this.runtime(record.runtimeHandler).kill(id, 'SIGKILL', true).catch(() => undefined);
        throw err;
      } finally {
        exit.cancel();
      }
      record.phase = 'running';
      record.startedAt = nowNs();
      this.opts.store.save(record);
      this.publish('CONTAINER_STARTED_EVENT', record);
      // A container that exits at once is reported exited by the next refresh.
      this.refresh(record);
    });
  }

  async stop(idOrPrefix: string, timeoutSeconds: number): Promise<void> {
    const existing = this.find(idOrPrefix);
    if (!existing) throw notFound(`container ${idOrPrefix} not found`);
    await this.locks.with(existing.id, () => this.stopLocked(existing.id, timeoutSeconds));
  }

  private async stopLocked(id: string, timeoutSeconds: number): Promise<void> {
    const record = this.records.get(id);
    if (!record) return;
    this.refresh(record);
    if (record.phase !== 'running' && record.phase !== 'created') return;
    const runtime = this.runtime(record.runtimeHandler);
    if (record.phase === 'running' && timeoutSeconds > 0) {
      await runtime.kill(id, record.stopSignal || 'SIGTERM');
      if (await this.waitExit(record, timeoutSeconds * 1000)) return;
      this.opts.log.info({ id, signal: record.stopSignal, timeoutSeconds }, 'container ignored its stop signal; killing it');
    }
    await runtime.kill(id, 'SIGKILL', true);
    if (!(await this.waitExit(record, 30_000))) {
      throw internal(`container ${id} did not exit within 30 s of SIGKILL`);
    }
  }

  /**
   * Waits for conmon's exit file; true when the container exited. Woken by
   * the exit directory's watch; the periodic look is only a safety net for a
   * monitor that died without writing one.
   */
  private async waitExit(record: ContainerRecord, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.refresh(record);
      if (record.phase === 'exited') return true;
      // Without its monitor no exit file will come: a running container counts as exited once its process is gone.
      if (!isConmonOf(record.conmonPid, record.id) && (record.phase === 'created' || !processAlive(record.pid))) return this.markLost(record), true;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      await this.nextExitEvent(record.id, Math.min(remaining, EXIT_SAFETY_NET_MS));
    }
  }

  /** Resolves at the next exit-file event for `id`, or after `ms`. */
  private nextExitEvent(id: string, ms: number): Promise<void> {
    this.watchExits();
    return new Promise((resolve) => {
      let wakers = this.exitWakers.get(id);
      if (!wakers) this.exitWakers.set(id, (wakers = new Set()));
      const set = wakers;
      const wake = (): void => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.exitWakers.get(id) === set) this.exitWakers.delete(id);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      set.add(wake);
    });
  }

  /** A promise settled once the container exited or its monitor is gone; cancel() stops watching. */
  private exitWatch(record: ContainerRecord): { exited: Promise<void>; cancel: () => void } {
    let cancelled = false;
    const exited = (async () => {
      while (!cancelled) {
        if (readExit(record.dir) || !isConmonOf(record.conmonPid, record.id)) return;
        await this.nextExitEvent(record.id, EXIT_SAFETY_NET_MS);
      }
      await new Promise<never>(() => undefined);
    })();
    return { exited, cancel: () => void (cancelled = true) };
  }

  async remove(idOrPrefix: string): Promise<void> {
    const existing = this.find(idOrPrefix);
    if (!existing) return;
    await this.locks.with(existing.id, async () => {
      const record = this.records.get(existing.id);
      if (!record) return;
      await this.stopLocked(record.id, 0).catch((err) => this.opts.log.warn({ id: record.id, err: describeError(err) }, 'kill before remove failed'));
      record.phase = 'removing';
      this.opts.store.save(record);
      await this.undo(record);
      this.publish('CONTAINER_DELETED_EVENT', record);
      this.opts.log.info({ id: record.id }, 'container removed');
    });
  }

  /** Removes every host trace of a container and its record; safe to repeat. */
  private async undo(record: ContainerRecord): Promise<void> {
    const runtime = this.runtimes.get(record.runtimeHandler);
    const conmonPid = record.conmonPid || tryReadPidFile(conmonFiles.conmonPid(record.dir)) || 0;
    if (readExit(record.dir)) {
      // conmon recorded the exit, so it has reaped the init process and its
      // work is done; the runtime only has its record and cgroups to drop.
      if (runtime) await runtime.deleteExited(record.id);
    } else if (runtime) {
      await runtime.delete(record.id, true);
    }
    // Whatever is left of conmon is killed without waiting: it holds nothing
    // the steps below need gone (not the rootfs), and SIGKILL cannot be refused.
    if (conmonPid && isConmonOf(conmonPid, record.id)) killQuietly(conmonPid, 'SIGKILL');
    this.opts.rootfs.unmount(join(record.dir, 'rootfs'));
    // Retried: a conmon being killed may still be closing its files in the bundle.
    rmSync(record.dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });
    rmSync(join(this.socketDir, record.id), { force: true, recursive: true });
    try {
      unlinkSync(join(this.exitDir, record.id));
    } catch {
      // none written
    }
    await this.opts.layerHolds?.releaseLayers(record.id);
    this.opts.store.delete(record.id);
    this.records.delete(record.id);
  }

  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output | null): Promise<void> {
    const id = this.require(idOrPrefix).id;
    await this.locks.with(id, async () => {
      const record = this.refresh(this.require(id));
      if (record.phase !== 'running' && record.phase !== 'created') {
        throw failedPrecondition(`container ${id} is ${this.stateOf(record)}; only created or running containers can be updated`);
      }
      const oci = ociResources(resources, this.opts.host);
      await this.runtime(record.runtimeHandler).update(id, oci);
      const previous = record.resourcesJson ? (JSON.parse(record.resourcesJson) as LinuxContainerResources__Output | null) : null;
      record.resourcesJson = JSON.stringify({ ...(previous ?? {}), ...(resources ?? {}) });
      if (record.specJson) {
        const spec = JSON.parse(record.specJson) as OciSpec;
        spec.linux.resources = { ...spec.linux.resources, ...oci, devices: spec.linux.resources.devices };
        record.specJson = JSON.stringify(spec);
      }
      this.opts.store.save(record);
    });
  }

  /**
   * Has conmon reopen the log file and, when the old one was moved away,
   * resolves once the new one exists: the kubelet (and critest) look for it as
   * soon as the call returns.
   */
  async reopenLog(idOrPrefix: string): Promise<void> {
    const record = this.refresh(this.require(idOrPrefix));
    if (record.phase !== 'running') throw failedPrecondition(`container ${record.id} is not running`);
    const logExists = (): boolean => {
      try {
        statSync(record.logPath);
        return true;
      } catch {
        return false;
      }
    };
    // Still there: not rotated, conmon reopens the same file and nothing new appears.
    const rotated = !logExists();
    const reopened = rotated ? waitForFile(record.logPath, 5_000) : Promise.resolve(true);
    this.conmon.reopenLog(record.dir);
    if (await reopened) return;
    throw internal(`container ${record.id}: conmon did not reopen ${record.logPath} within 5 s`);
  }

  async execSync(idOrPrefix: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
    const record = this.refresh(this.require(idOrPrefix));
    if (record.phase !== 'running') throw failedPrecondition(`container ${record.id} is not running`);
    const spec = JSON.parse(record.specJson) as OciSpec;
    const token = randomBytes(6).toString('hex');
    const processPath = join(record.dir, `exec-${token}.json`);
    const pidPath = join(record.dir, `exec-${token}.pid`);
    writeFileSync(processPath, JSON.stringify(execProcess(spec, cmd, false)));
    const max = this.opts.config.container.exec_sync_max_output_bytes;
    const runtime = this.runtime(record.runtimeHandler);
    try {
      const child = runtime.spawnExec(record.id, processPath, pidPath);
      const capture = (stream: NodeJS.ReadableStream | null): Buffer[] => {
        const chunks: Buffer[] = [];
        let size = 0;
        stream?.on('data', (b: Buffer) => {
          if (size >= max) return;
          const take = b.subarray(0, max - size);
          chunks.push(take);
          size += take.length;
        });
        return chunks;
      };
      const out = capture(child.stdout);
      const err = capture(child.stderr);
      let timedOut = false;
      const closed = new Promise<number>((resolve, reject) => {
        child.once('error', (e) => reject(internal(`cannot run ${runtime.path} exec: ${e.message}`, e)));
        child.once('close', (code, signal) => resolve(code ?? (signal ? 128 + signalNumber(signal) : 255)));
      });
      const finished = closed.then(() => undefined, () => undefined);
      const timer =
        timeoutSeconds > 0
          ? setTimeout(() => {
              timedOut = true;
              void this.killTimedOutExec(pidPath, child.pid ?? 0, finished);
            }, timeoutSeconds * 1000)
          : undefined;
      const exitCode = await runtime.timed('exec', () => closed);
      if (timer) clearTimeout(timer);
      if (timedOut) throw deadlineExceeded(`command ${JSON.stringify(cmd)} timed out after ${timeoutSeconds} s`);
      return { stdout: Buffer.concat(out), stderr: Buffer.concat(err), exitCode };
    } finally {
      rmSync(processPath, { force: true });
      rmSync(pidPath, { force: true });
    }
  }

  /**
   * Kills a timed-out exec'd process by the pid `runtime exec` wrote, and
   * leaves `runtime exec` alive to reap it: killed itself first, it would
   * orphan the process to the container's init, which may never reap it
   * (a zombie `pgrep` still finds). `runtime exec` is killed only when the pid
   * never shows up or it does not finish after its process died.
   */
  private async killTimedOutExec(pidPath: string, runtimePid: number, finished: Promise<void>): Promise<void> {
    if (await waitForFile(pidPath, 2_000, finished)) {
      const pid = tryReadPidFile(pidPath);
      if (pid) killQuietly(pid, 'SIGKILL');
    }
    let timer: NodeJS.Timeout | undefined;
    const reaped = await Promise.race([finished.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5_000)))]);
    clearTimeout(timer);
    if (!reaped) killQuietly(runtimePid, 'SIGKILL');
  }

  // ---- pod hooks ----

  async stopPodContainers(podSandboxId: string, timeoutSeconds: number): Promise<void> {
    const ids = [...this.records.values()].filter((r) => r.podSandboxId === podSandboxId).map((r) => r.id);
    await Promise.all(ids.map((id) => this.stop(id, timeoutSeconds).catch((err) => {
      if (!isBerthError(err, 'NotFound')) throw err;
    })));
  }

  async removePodContainers(podSandboxId: string): Promise<void> {
    const ids = [...this.records.values()].filter((r) => r.podSandboxId === podSandboxId).map((r) => r.id);
    await Promise.all(ids.map((id) => this.remove(id)));
  }

  // ---- recovery and exit tracking ----

  /**
   * At start: finish or undo what a crash interrupted, pick up exits that
   * happened while berthd was down, kill conmons nobody owns, then watch
   * conmon's exit dir so exits are noticed (and published) as they happen.
   */
  async recover(): Promise<void> {
    for (const record of [...this.records.values()]) {
      try {
        if (record.phase === 'creating' || record.phase === 'removing') {
          this.opts.log.info({ id: record.id, phase: record.phase }, 'finishing an interrupted container create/remove');
          await this.undo(record);
          if (record.phase === 'removing') this.publish('CONTAINER_DELETED_EVENT', record);
          continue;
        }
        this.refresh(record);
        if ((record.phase === 'running' || record.phase === 'created') && !isConmonOf(record.conmonPid, record.id)) {
          this.markLost(record);
        }
        this.opts.log.info({ id: record.id, state: this.stateOf(record), exitCode: record.exitCode }, 'container recovered');
      } catch (err) {
        this.opts.log.error({ id: record.id, err: describeError(err) }, 'container recovery failed');
      }
    }
    this.killOrphanConmons();
    this.watchExits();
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }

  private watchExits(): void {
    if (this.watcher || this.closed) return;
    try {
      this.watcher = watch(this.exitDir, (_event, file) => {
        if (!file) return;
        // conmon writes "<id>.XXXXXX" and renames it to "<id>".
        const id = String(file);
        const record = this.records.get(id);
        if (record) this.refresh(record);
        for (const wake of [...(this.exitWakers.get(id) ?? [])]) wake();
      });
      this.watcher.on('error', () => undefined);
    } catch (err) {
      this.opts.log.warn({ err: describeError(err) }, 'cannot watch the exit directory; exits are noticed on the next call');
    }
  }

  private killOrphanConmons(): void {
    let pids: string[] = [];
    try {
      pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
    } catch {
      return;
    }
    for (const p of pids) {
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      if (!argv[0]?.endsWith('conmon')) continue;
      const bundle = argv[argv.indexOf('-b') + 1];
      const cid = argv[argv.indexOf('-c') + 1];
      if (!bundle || !cid || dirname(bundle) !== this.containersDir) continue;
      if (this.records.has(cid)) continue;
      this.opts.log.warn({ pid: Number(p), id: cid }, 'killing a conmon no container record owns');
      killQuietly(Number(p), 'SIGKILL');
    }
  }

  /** The monitor is gone without an exit file: the container is reported exited with an unknown code. */
  private markLost(record: ContainerRecord): void {
    const exit = readExit(record.dir);
    if (exit) return void this.refresh(record);
    const wasRunning = record.phase === 'running';
    record.phase = 'exited';
    record.exitCode = 255;
    record.finishedAt = nowNs();
    record.reason = 'Error';
    record.message = 'the container monitor (conmon) exited without recording an exit code';
    this.opts.store.save(record);
    if (wasRunning) this.publish('CONTAINER_STOPPED_EVENT', record);
  }

  /** Applies conmon's exit file to a created/running record. */
  private refresh(record: ContainerRecord): ContainerRecord {
    if (record.phase !== 'running' && record.phase !== 'created') return record;
    const exit = readExit(record.dir);
    if (!exit) return record;
    record.phase = 'exited';
    record.exitCode = exit.exitCode;
    record.finishedAt = msToNs(exit.finishedAtMs);
    if (record.startedAt === '0') record.startedAt = record.finishedAt;
    record.reason = exit.oomKilled ? 'OOMKilled' : exit.exitCode === 0 ? 'Completed' : 'Error';
    if (!record.message && exit.oomKilled) record.message = 'the container exceeded its memory limit';
    record.pid = 0;
    this.opts.store.save(record);
    this.publish('CONTAINER_STOPPED_EVENT', record);
    return record;
  }

  // ---- helpers ----

  private find(idOrPrefix: string): ContainerRecord | undefined {
    if (!idOrPrefix) return undefined;
    const exact = this.records.get(idOrPrefix);
    if (exact) return exact.phase === 'creating' ? undefined : exact;
    const matches = [...this.records.values()].filter((r) => r.id.startsWith(idOrPrefix) && r.phase !== 'creating');
    if (matches.length > 1) throw failedPrecondition(`container id prefix "${idOrPrefix}" is ambiguous (${matches.length} containers)`);
    return matches[0];
  }

  private require(idOrPrefix: string): ContainerRecord {
    const record = this.find(idOrPrefix);
    if (!record) throw notFound(`container ${idOrPrefix} not found`);
    return record;
  }

  private stateOf(record: ContainerRecord): ContainerState {
    switch (record.phase) {
      case 'created':
        return 'CONTAINER_CREATED';
      case 'running':
        return 'CONTAINER_RUNNING';
      case 'exited':
        return 'CONTAINER_EXITED';
      default:
        return 'CONTAINER_UNKNOWN';
    }
  }

  private view(record: ContainerRecord): ContainerView {
    const runtime = this.runtimes.get(record.runtimeHandler);
    let cgroupPath = record.cgroupsPath;
    if (this.opts.cgroupRelativePath && cgroupPath) {
      try {
        cgroupPath = this.opts.cgroupRelativePath(cgroupPath);
      } catch {
        // leave as written in the spec
      }
    }
    return {
      id: record.id,
      podSandboxId: record.podSandboxId,
      config: JSON.parse(record.configJson) as ContainerConfig__Output,
      state: this.stateOf(record),
      createdAt: record.createdAt,
      startedAt: record.startedAt,
      finishedAt: record.finishedAt,
      exitCode: record.exitCode,
      imageRef: record.imageRef,
      imageId: record.imageId,
      pid: record.phase === 'running' || record.phase === 'created' ? record.pid : 0,
      cgroupPath,
      upperDir: join(record.dir, 'upper'),
      runtimeHandler: record.runtimeHandler,
      runtimePath: runtime?.path ?? '',
      runtimeRoot: runtime?.root ?? '',
      bundleDir: record.dir,
    };
  }

  private publish(type: ContainerEventType, record: ContainerRecord): void {
    try {
      this.opts.events?.publish({ type, containerId: record.id, podSandboxId: record.podSandboxId, createdAt: nowNs() });
    } catch (err) {
      this.opts.log.warn({ err: describeError(err) }, 'event publish failed');
    }
  }
}

/**
 * The overlay's root directory takes the upper dir's owner and mode, so the
 * upper dir gets those of the image's root (0755 root:root when unknown): a
 * 0700 upper makes "/" untraversable for every non-root container user.
 */
function shapeUpperLikeImageRoot(upperDir: string, layerDirs: string[]): void {
  let mode = 0o755;
  let uid = 0;
  let gid = 0;
  const top = layerDirs[layerDirs.length - 1];
  if (top) {
    try {
      const st = statSync(top);
      mode = st.mode & 0o7777;
      uid = st.uid;
      gid = st.gid;
    } catch {
      // an image without layers: the defaults
    }
  }
  chownSync(upperDir, uid, gid);
  chmodSync(upperDir, mode);
}

/**
 * Resolves true once `path` exists (watching its directory, not polling),
 * false after `timeoutMs` or once `abort` settles without it.
 */
function waitForFile(path: string, timeoutMs: number, abort?: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (found: boolean): void => {
      if (done) return;
      done = true;
      watcher?.close();
      clearTimeout(timer);
      resolve(found);
    };
    const look = (): void => {
      if (existsSync(path)) finish(true);
    };
    try {
      watcher = watch(dirname(path), look);
      watcher.on('error', () => finish(existsSync(path)));
    } catch {
      return resolve(existsSync(path));
    }
    timer = setTimeout(() => finish(existsSync(path)), timeoutMs);
    void abort?.then(() => finish(existsSync(path)), () => finish(existsSync(path)));
    look();
  });
}

function processAlive(pid: number): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const n = osConstants.signals[signal];
  return typeof n === 'number' ? n : 0;
}
