// Builds berthd from a config: host checks, store, model, CRI server, metrics.
// Kept apart from the CLI (berthd.ts) so tests can run a daemon in-process too.
import { mkdirSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { BerthConfig } from '../runtime/config';
import { CgroupHierarchy } from '../runtime/cgroups/cgroup-hierarchy';
import { SystemdCgroups } from '../runtime/cgroups/systemd-cgroups';
import { AdminServer, adminSocketPath } from './admin-server';
import { ContainerEventBus } from '../runtime/events/container-event-bus';
import { RuntimeMetrics } from '../runtime/stats/runtime-metrics';
import { StatsCollector } from '../runtime/stats/stats-collector';
import { detectHost } from '../runtime/host/host-facts';
import { checkHostAtStart } from '../runtime/host/doctor/doctor';
import { applyLiveConfig } from './config-reload';
import { RuntimeReadinessProbe } from '../runtime/host/runtime-readiness';
import { BerthDatabase } from '../runtime/store/database';
import { CniNetwork } from '../cni/cni-network';
import { writeDefaultConflistIfMissing } from '../cni/default-conflist';
import { loadNative } from '../native';
import { PodSandboxes } from '../runtime/sandbox/pod-sandboxes';
import { Containers } from '../runtime/container/containers';
import { ContainerStreamingRuntime } from '../runtime/exec/container-streaming-runtime';
import { StreamingServer } from './streaming/streaming-server';
import { ContainerStore } from '../runtime/container/container-store';
import { OverlayRootfsMounter } from '../runtime/image/rootfs-mounter';
import type { ShimContext } from './context';
import { allHandlers } from './handlers';
import { Images } from '../runtime/image/images';
import type { Logger } from './logger';
import { BerthMetrics } from './metrics';
import { buildInfo } from './build-info';
import { CriServer } from './server';

export interface RunningDaemon {
  ctx: ShimContext;
  metricsPort: number | undefined;
  /** Applies the keys a reload may change live (shim/config-reload.ts) to the running daemon. */
  applyLiveConfig(next: BerthConfig): void;
  /** Stops serving, closes the store; never touches running containers. */
  stop(): Promise<void>;
}

export async function startDaemon(config: BerthConfig, log: Logger): Promise<RunningDaemon> {
  for (const dir of [config.root, config.state]) mkdirSync(dir, { recursive: true, mode: 0o700 });

  await checkHostAtStart(config, log);
  const host = detectHost(config);
  log.info(
    { cgroup: host.cgroup.mode, unified: host.cgroup.unifiedMount, v2Controllers: host.cgroup.v2Controllers, kernel: host.kernel },
    `cgroups: ${host.cgroup.mode}`,
  );
  if (host.minOomScoreAdj > -1000) {
    log.warn({ minOomScoreAdj: host.minOomScoreAdj }, `oom_score_adj below ${host.minOomScoreAdj} will be raised to it (no CAP_SYS_RESOURCE)`);
  }

  const db = new BerthDatabase(join(config.root, 'berth.db'));
  const metrics = new BerthMetrics();
  if (config.cni.write_default_conflist) {
    const cni = config.cni;
    const written = writeDefaultConflistIfMissing(cni.conf_dir, { name: cni.default_network_name, bridge: cni.default_bridge, subnet: cni.default_subnet });
    if (written) log.info({ path: written }, 'no CNI network configured: wrote the default (bridge + host-local + portmap + loopback)');
  }
  // NetworkReady follows the CNI network's STATUS (CNI 1.1) or its config and plugins being present.
  const podNetwork = new CniNetwork({ confDir: config.cni.conf_dir, binDirs: config.cni.bin_dirs, cacheDir: config.cni.cache_dir });
  const cgroups = CgroupHierarchy.detect(config.cgroup.driver);
  const systemd = config.cgroup.driver === 'systemd' ? await connectSystemd(cgroups, config.cgroup.systemd_socket) : undefined;
  const sandboxes = new PodSandboxes({
    config, db, cgroups, systemd, network: podNetwork, native: loadNative(), log, podCidr: () => ctx.podCidr.value,
    observeCniCall: (operation, seconds, outcome) => ctx.runtimeMetrics.observeCniCall(operation, seconds, outcome),
  });
  const ctx: ShimContext = {
    config,
    log,
    metrics,
    host,
    db,
    network: { networkStatus: () => podNetwork.status() },
    runtimeReadiness: RuntimeReadinessProbe.forConfig(config),
    podCidr: { value: '' },
    cgroups,
    events: new ContainerEventBus({
      onOverflow: (subscription, queued) => log.warn({ subscription, queued }, 'container events subscriber fell behind; its stream is ended'),
    }),
    runtimeMetrics: new RuntimeMetrics(metrics.registry),
    // Read through ctx: the containers are built in this same literal.
    stats: new StatsCollector({ cgroups, layerMountpoint: config.root, upperDirs: () => ctx.containers.list().map((c) => c.upperDir) }),
    sandboxes,
    containers: new Containers({
      config, host, log, sandboxes,
      store: new ContainerStore(db),
      // Read through ctx: the images are built in this same literal.
      images: { resolve: (r) => ctx.images.resolve(r), forContainer: (r) => ctx.images.forContainer(r) },
      layerHolds: { holdLayers: (h, i) => ctx.images.holdLayers(h, i), releaseLayers: (h) => ctx.images.releaseLayers(h) },
      rootfs: new OverlayRootfsMounter(),
      events: { publish: (e) => ctx.events.publish(e) },
      cgroupRelativePath: (p) => cgroups.relativePath(p),
      observeOciCall: (operation, seconds, runtime, outcome) => ctx.runtimeMetrics.observeOciCall(operation, seconds, runtime, outcome),
    }),
    images: new Images({ config, db, log, metrics: { observeImagePull: (s, b, o) => ctx.runtimeMetrics.observeImagePull(s, b, o) } }),
    streaming: new StreamingServer({
      address: config.streaming.address,
      port: config.streaming.port,
      tokenTtlSeconds: config.streaming.token_ttl_seconds,
      log,
      runtime: new ContainerStreamingRuntime({
        containers: { requireRunning: (id) => ctx.containers.requireRunning(id), execTarget: (id, cmd, tty) => ctx.containers.execTarget(id, cmd, tty) },
        sandboxes,
        workDir: join(config.state, 'exec'),
      }),
    }),
  };
  ctx.images.init();
  ctx.images.setWritableLayers(ctx.stats.layers);
  sandboxes.setContainerHooks(ctx.containers);
  const recovery = await sandboxes.recover();
  log.info(recovery, `pod sandboxes recovered: ${recovery.loaded} loaded, ${recovery.undone.length} undone, ${recovery.failures.length} failures`);
  await ctx.containers.recover();
  ctx.runtimeMetrics.setLookups({ sandboxes: ctx.sandboxes, containers: ctx.containers });
  ctx.stats.start();
  ctx.runtimeMetrics.countRecovery('sandbox', 'recovered', recovery.loaded - recovery.undone.length - recovery.failures.length);
  ctx.runtimeMetrics.countRecovery('sandbox', 'cleaned_up', recovery.undone.length);
  ctx.runtimeMetrics.countRecovery('sandbox', 'failed', recovery.failures.length);
  ctx.runtimeMetrics.countRecovery('cni', 'cleaned_up', recovery.cniGc.removed.length);
  ctx.runtimeMetrics.countRecovery('cni', 'failed', recovery.cniGc.failed.length);
  ctx.runtimeMetrics.countRecovery('container', 'recovered', ctx.containers.list().length);

  try {
    const port = await ctx.streaming.listen();
    log.info({ url: ctx.streaming.baseUrl, port }, 'streaming server (exec/attach/port-forward) listening');
  } catch (err) {
    db.close();
    throw new Error(`cannot serve streaming on ${config.streaming.address}:${config.streaming.port}: ${(err as Error).message}`);
  }

  const server = new CriServer({
    socketPath: config.socket,
    maxRecvMessageBytes: config.grpc.max_recv_message_bytes,
    maxSendMessageBytes: config.grpc.max_send_message_bytes,
    log,
    metrics,
    handlers: allHandlers(ctx),
  });
  try {
    await server.listen();
  } catch (err) {
    db.close();
    throw err;
  }

  let metricsPort: number | undefined;
  if (config.metrics.enabled) {
    try {
      metricsPort = await metrics.listen(config.metrics.address, config.metrics.port);
      log.info({ address: config.metrics.address, port: metricsPort }, 'metrics served at /metrics');
    } catch (err) {
      await server.shutdown(0);
      db.close();
      throw new Error(`cannot serve metrics on ${config.metrics.address}:${config.metrics.port}: ${(err as Error).message}`);
    }
  }

  // Before the pid file: whoever waits for berthd to be up may use the admin socket at once.
  const admin = await AdminServer.listen(adminSocketPath(config.state), { importArchive: (tar) => ctx.images.importArchive(tar) }, log);

  const pidFile = join(config.state, 'berth.pid');
  writeFileSync(pidFile, `${process.pid}\n`);
  log.info({ socket: config.socket, version: buildInfo().version, commit: buildInfo().commit }, 'berthd serving CRI v1');

  return {
    ctx,
    metricsPort,
    applyLiveConfig: (next) => applyLiveConfig(config, next, { network: podNetwork, streaming: ctx.streaming }),
    async stop() {
      log.info('berthd stopping: no new calls, finishing the ones in flight');
      ctx.events.close();
      ctx.containers.close();
      await server.shutdown();
      await admin.close();
      await ctx.stats.stop();
      await ctx.streaming.close();
      await metrics.close();
      await ctx.images.close();
      systemd?.close();
      db.close();
      try {
        unlinkSync(pidFile);
      } catch {
        // gone already
      }
      log.info('berthd stopped; containers keep running under conmon');
    },
  };
}

/** The systemd driver needs systemd's manager: without it no pod slice can be made, so berthd does not start. */
async function connectSystemd(cgroups: CgroupHierarchy, socket: string): Promise<SystemdCgroups> {
  try {
    return await SystemdCgroups.connect(cgroups, socket ? { socket } : {});
  } catch (err) {
    throw new Error(`cgroup.driver is "systemd" but systemd's manager cannot be reached (${(err as Error).message}); run berthd under systemd, set cgroup.systemd_socket, or use cgroup.driver = "cgroupfs"`);
  }
}
