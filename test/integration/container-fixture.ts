// A container model over real runc + conmon for integration tests that drive
// runtime/container/ directly: the image side is a busybox layer directory
// mounted as a real overlay, the pod is the host's namespaces with a cgroup
// parent of its own. Everything is made under one temp dir and undone in
// cleanup().
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-proto/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { loadNative } from '../../native';
import { silentLog } from '../../runtime/common/log';
import type { BerthConfig } from '../../runtime/config';
import { ContainerStore } from '../../runtime/container/container-store';
import { Containers } from '../../runtime/container/containers';
import type { ContainerLifecycleEvent } from '../../runtime/events/event-types';
import { detectHost, type HostFacts } from '../../runtime/host/host-facts';
import type { ImageRecord, OciImageRuntimeConfig } from '../../runtime/image/image-types';
import type { PodSandboxView } from '../../runtime/sandbox/sandbox-types';
import { BerthDatabase } from '../../runtime/store/database';
import { defaultConfig } from '../../shim/config';

const BUSYBOX_APPLETS = ['sh', 'echo', 'cat', 'sleep', 'ls', 'id', 'head', 'tail', 'grep', 'true', 'false', 'printf', 'pwd', 'env', 'unshare', 'mount', 'touch', 'trap', 'dd', 'wc', 'kill', 'ps', 'yes'];

export function makeBusyboxLayer(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'work', 'home/app', 'root']) mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of BUSYBOX_APPLETS) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n');
}

export function containerConfig(over: Partial<ContainerConfig__Output> & { name?: string } = {}): ContainerConfig__Output {
  const { name, ...rest } = over;
  return {
    metadata: { name: name ?? 'c', attempt: 0 },
    image: { image: 'busybox-test', annotations: {}, user_specified_image: '', runtime_handler: '' },
    command: [],
    args: [],
    working_dir: '',
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: {},
    log_path: `${name ?? 'c'}.log`,
    stdin: false,
    stdin_once: false,
    tty: false,
    linux: { resources: null, security_context: null },
    windows: null,
    CDI_devices: [],
    stop_signal: 'SIGNAL_RUNTIME_DEFAULT',
    ...rest,
  } as ContainerConfig__Output;
}

export class ContainerFixture {
  readonly dir = mkdtempSync('/tmp/berth-ctr-');
  readonly layer = join(this.dir, 'layer');
  readonly logDir = join(this.dir, 'logs');
  readonly cgroupParent = `/berth-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  readonly events: ContainerLifecycleEvent[] = [];
  imageConfig: OciImageRuntimeConfig = { Cmd: ['sh'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'], WorkingDir: '/' };
  config: BerthConfig;
  db: BerthDatabase;
  private model: Containers | undefined;
  private host: HostFacts | undefined;
  /** Resolves once the host facts are known and the model is built (create/run wait for it; tests may `before(() => fx.ready)`). */
  readonly ready: Promise<void>;
  readonly podConfig = { metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 }, log_directory: this.logDir, linux: null } as unknown as PodSandboxConfig__Output;

  constructor(handler = 'runc') {
    makeBusyboxLayer(this.layer);
    mkdirSync(this.logDir);
    this.config = defaultConfig();
    this.config = {
      ...this.config,
      root: join(this.dir, 'root'),
      state: join(this.dir, 'state'),
      oci: {
        ...this.config.oci,
        default_runtime: handler,
        runtimes: {
          runc: { ...this.config.oci.runtimes.runc, path: 'runc', root: join(this.dir, 'state', 'runc') },
          crun: { ...this.config.oci.runtimes.crun, path: 'crun', root: join(this.dir, 'state', 'crun') },
        },
      },
    };
    this.db = new BerthDatabase(join(this.config.root, 'berth.db'));
    this.ready = detectHost(this.config).then((host) => {
      this.host = host;
      this.open();
    });
  }

  get containers(): Containers {
    if (!this.model) throw new Error('ContainerFixture: await fx.ready first');
    return this.model;
  }

  /** (Re)builds the model on the same database and dirs, as a restarted berthd would. */
  open(): Containers {
    const host = this.host;
    if (!host) throw new Error('ContainerFixture: await fx.ready first');
    const native = loadNative();
    const image: ImageRecord = {
      id: 'sha256:' + 'ab'.repeat(32),
      repoTags: ['busybox-test:latest'],
      repoDigests: [],
      size: 1,
      username: '',
      pinned: false,
      annotations: {},
      config: this.imageConfig,
    };
    const sandbox: PodSandboxView = {
      id: this.podId(),
      config: this.podConfig,
      state: 'SANDBOX_READY',
      createdAt: '1',
      runtimeHandler: '',
      netnsPath: '',
      ipcnsPath: '',
      utsnsPath: '',
      pidnsPath: '',
      cgroupParent: this.cgroupParent,
      hostsPath: '',
      resolvConfPath: '',
      hostnamePath: '',
      shmPath: '',
      hostname: 'podhost',
      ips: [],
      namespaceModes: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE' },
      logDirectory: this.logDir,
      userNamespace: undefined,
    };
    this.model = new Containers({
      config: this.config,
      host,
      store: new ContainerStore(this.db),
      log: silentLog,
      sandboxes: { get: (id) => (sandbox.id.startsWith(id) ? sandbox : undefined), list: () => [sandbox], whileReady: (_id, work) => work(sandbox) },
      images: {
        resolve: () => ({ ...image, config: this.imageConfig }),
        forContainer: () => ({ image: { ...image, config: this.imageConfig }, layerDirs: [this.layer] }),
      },
      rootfs: {
        mount: (o) => native.mountOverlay([...o.layerDirs].reverse(), o.upperDir, o.workDir, o.target, o.readonly ?? false),
        unmount: (target) => {
          try {
            native.umount2(target, native.mountFlags.MNT_DETACH);
          } catch {
            // not mounted
          }
        },
      },
      events: { publish: (e) => this.events.push(e) },
    });
    return this.model;
  }

  podId(): string {
    return 'pod0000000000000000000000000000000000000000000000000000000000001';
  }

  /** CreateContainer in the fixture's pod, as the kubelet sends it (with the pod's config). */
  async create(config: ContainerConfig__Output): Promise<string> {
    await this.ready;
    return this.containers.create({ podSandboxId: this.podId(), config, sandboxConfig: this.podConfig });
  }

  async run(config: ContainerConfig__Output): Promise<string> {
    const id = await this.create(config);
    await this.containers.start(id);
    return id;
  }

  async waitExited(id: string, limitMs = 30_000): Promise<void> {
    const deadline = Date.now() + limitMs;
    while (this.containers.get(id)?.state !== 'CONTAINER_EXITED') {
      if (Date.now() > deadline) throw new Error(`container ${id} did not exit within ${limitMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async cleanup(): Promise<void> {
    await this.ready.catch(() => undefined);
    if (this.model) {
      for (const c of this.model.list()) await this.model.remove(c.id).catch(() => undefined);
      this.model.close();
    }
    this.db.close();
    for (const controller of readdirSync('/sys/fs/cgroup')) {
      try {
        rmdirSync(join('/sys/fs/cgroup', controller, this.cgroupParent));
      } catch {
        // not created in this hierarchy
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
