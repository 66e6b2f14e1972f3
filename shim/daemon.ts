// Builds berthd from a config: host checks, store, model, CRI server, metrics.
// Kept apart from the CLI (berthd.ts) so tests can run a daemon in-process too.
import { describeError } from '../runtime/errors';
import { writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { BerthConfig } from '../runtime/config';
import { AdminServer, adminSocketPath } from './admin-server';
import { detectHost } from '../runtime/host/host-facts';
import { checkHostAtStart, reportHostAfterStart } from '../runtime/host/doctor/doctor';
import { HostProbeCache } from '../runtime/host/host-probe-cache';
import { judgeOciRuntimesAtStart } from '../runtime/host/runtime-versions';
import { applyLiveConfig } from './config-reload';
import { BerthDatabase } from '../runtime/store/database';
import { enforceStorePermissions, storeDirRules } from '../runtime/store/store-permissions';
import type { ShimServices } from './services';
import { allHandlers } from './handlers';
import { AFTER_SERVING } from './handler';
import { buildDaemonParts } from './daemon-services';
import type { Logger } from './logger';
import { BerthMetrics } from './metrics';
import { buildInfo } from './build-info';
import { criCodecsState, criServiceDefinitions } from '../cri-proto';
import { CriServer } from './server';
import { StartTimeline } from './start-timeline';
import { startRecord, startRecordSummary, writeCodeCache } from './bundle/code-cache';
import { loadNative } from '../native';
import { recheckSnapshot } from './bundle/snapshot-recheck';

/** How long after serving the work that does not gate it starts. */
const AFTER_START_DELAY_MS = 500;

export interface RunningDaemon {
  ctx: ShimServices;
  metricsPort: number | undefined;
  /** Applies the keys a reload may change live (shim/config-reload.ts) to the running daemon. */
  applyLiveConfig(next: BerthConfig): void;
  /** Stops serving, closes the store; never touches running containers. */
  stop(): Promise<void>;
}

export async function startDaemon(config: BerthConfig, log: Logger, timeline = new StartTimeline(log)): Promise<RunningDaemon> {
  enforceStorePermissions(storeDirRules(config), log);
  timeline.mark('store permissions');

  // The host's programs are asked (or found in the cache) while the checks that can stop berthd run.
  const probes = HostProbeCache.load(join(config.state, 'host-probes.json'));
  const detecting = detectHost(config, probes);
  detecting.catch(() => undefined);
  const checking = checkHostAtStart(config, log, probes);
  checking.catch(() => undefined);
  // While the host is read on the thread pool, this thread builds the CRI services' definitions.
  criServiceDefinitions();
  timeline.mark('cri services');
  const gatingChecks = await checking;
  timeline.mark('host checks');
  const host = await detecting;
  timeline.mark('host facts');
  judgeOciRuntimesAtStart(config, host, log);
  log.info(
    { cgroup: host.cgroup.mode, unified: host.cgroup.unifiedMount, v2Controllers: host.cgroup.v2Controllers, kernel: host.kernel },
    `cgroups: ${host.cgroup.mode}`,
  );
  if (host.minOomScoreAdj > -1000) {
    log.warn({ minOomScoreAdj: host.minOomScoreAdj }, `oom_score_adj below ${host.minOomScoreAdj} will be raised to it (no CAP_SYS_RESOURCE)`);
  }
  for (const [feature, support] of [['user namespaces', host.mountFeatures.userNamespaces], ['recursive read-only mounts', host.mountFeatures.recursiveReadOnly]] as const) {
    if (support.supported) log.info(`${feature}: supported (prepared host-side)`);
    else log.warn({ reason: support.reason }, `${feature}: not supported on this host`);
  }
  const criu = host.checkpoint.criu;
  if (criu.supported) log.info({ criu: criu.path, version: criu.version }, 'checkpoint/restore: criu works here');
  else log.warn({ reason: criu.reason }, 'checkpoint/restore: not available on this host');

  const db = new BerthDatabase(join(config.root, 'berth.db'));
  const metrics = new BerthMetrics();
  timeline.mark('database and metrics');
  const { services: ctx, podNetwork, nodeNetwork, runtimeMetrics, systemd } = await buildDaemonParts(config, log, host, db, metrics, probes);
  timeline.mark('model');
  // The streaming server's socket is opened now and waited for only before serving: its listen
  // (a turn of the loop, 7-19 ms at a restart) overlaps recovery's waits on the thread pool.
  const streamingListening = ctx.streaming.listen();
  streamingListening.catch(() => undefined);
  // berth's fallback network put in place and the conf dir watched before recovery's CNI GC reads it.
  await nodeNetwork.start();
  timeline.mark('node network');
  ctx.images.init();
  timeline.mark('images');
  const recovery = await ctx.sandboxes.recover();
  timeline.mark('sandbox recovery');
  log.info(recovery, `pod sandboxes recovered: ${recovery.loaded} loaded, ${recovery.undone.length} undone, ${recovery.failures.length} failures`);
  await ctx.containers.recover();
  timeline.mark('container recovery');
  runtimeMetrics.setLookups({ sandboxes: ctx.sandboxes, containers: ctx.containers });
  // The writable-layer meter's first walk waits with the other after-start work: at a restart every
  // container's layer is due at once, and 100 walks beside a kubelet's first relist slowed its answers.
  ctx.stats.start(AFTER_START_DELAY_MS);
  runtimeMetrics.countRecovery('sandbox', 'recovered', recovery.loaded - recovery.undone.length - recovery.failures.length);
  runtimeMetrics.countRecovery('sandbox', 'cleaned_up', recovery.undone.length);
  runtimeMetrics.countRecovery('sandbox', 'failed', recovery.failures.length);
  runtimeMetrics.countRecovery('cni', 'cleaned_up', recovery.cniGc.removed.length);
  runtimeMetrics.countRecovery('cni', 'failed', recovery.cniGc.failed.length);
  runtimeMetrics.countRecovery('container', 'recovered', ctx.containers.count());

  try {
    const port = await streamingListening;
    log.info({ url: ctx.streaming.baseUrl, port }, 'streaming server (exec/attach/port-forward) listening');
    timeline.mark('streaming');
  } catch (err) {
    db.close();
    throw new Error(`cannot serve streaming on ${config.streaming.address}:${config.streaming.port}: ${describeError(err)}`);
  }

  const handlers = allHandlers(ctx);
  const server = new CriServer({
    socketPath: config.socket,
    maxRecvMessageBytes: config.grpc.max_recv_message_bytes,
    maxSendMessageBytes: config.grpc.max_send_message_bytes,
    log,
    metrics,
    handlers,
  });
  timeline.mark('cri server');
  try {
    await server.listen();
    timeline.mark('cri listen');
  } catch (err) {
    db.close();
    throw err;
  }

  let metricsPort: number | undefined;
  if (config.metrics.enabled) {
    try {
      metricsPort = await metrics.listen(config.metrics.address, config.metrics.port);
      log.info({ address: config.metrics.address, port: metricsPort }, 'metrics served at /metrics');
      timeline.mark('metrics');
    } catch (err) {
      await server.shutdown(0);
      db.close();
      throw new Error(`cannot serve metrics on ${config.metrics.address}:${config.metrics.port}: ${describeError(err)}`);
    }
  }

  // Before the pid file: whoever waits for berthd to be up may use the admin socket at once.
  const admin = await AdminServer.listen(adminSocketPath(config.state), {
    importArchive: (tar) => ctx.images.importArchive(tar),
    prepareExport: (references) => ctx.images.prepareExport(references),
    writeExport: (plan, out) => ctx.images.writeExport(plan, out),
  }, log);

  const pidFile = join(config.state, 'berth.pid');
  writeFileSync(pidFile, `${process.pid}\n`);
  timeline.mark('admin socket');
  log.info({ socket: config.socket, version: buildInfo().version, commit: buildInfo().commit, startMs: timeline.elapsed(), cpuMs: timeline.cpuMs(), phases: timeline.phases, start: startRecordSummary(), codecs: criCodecsState() }, 'berthd serving CRI v1');
  // In the background, between the first calls: the lists' bytes for a kubelet's relist after a restart.
  void handlers[AFTER_SERVING]?.().catch((err: unknown) => log.warn({ err: describeError(err) }, 'preparing the first lists failed'));
  // What does not gate serving waits until the first calls (a kubelet's relist after a restart) are answered:
  // doctor's other checks (logged as before), keeping the probes for the next start, Node's process metrics,
  // the code cache.
  const afterStart = setTimeout(() => {
    metrics.collectProcessMetrics();
    // Once per bundle, Node and flags: V8's code cache of the start just made, for the next one.
    try {
      const written = writeCodeCache();
      if (written) log.info(written, 'code cache written for the next start');
    } catch (err) {
      log.warn({ err: describeError(err) }, 'code cache not written (the next start compiles berthd again)');
    }
    // Node read and unpacked the startup snapshot's blob with malloc, and glibc keeps what it freed of that
    // (~3 MiB of an idle berthd's memory) unless asked: once, after the start.
    if (startRecord()?.snapshot === 'used') void loadNative().releaseFreeMemory().catch(() => undefined);
    // Started without the snapshot because an earlier start from it never reached berthd's code: refused, or killed?
    const recheck = startRecord()?.snapshotRecheck;
    if (recheck) {
      void recheckSnapshot(recheck).then((result) => {
        if (result.taken) log.info({ blob: recheck.blob, removed: result.removed }, 'startup snapshot checked: Node takes it, the next start uses it again');
        else log.warn({ blob: recheck.blob, reason: result.reason }, 'startup snapshot refused by Node: berthd starts without it until the next build or installation');
      });
    }
    void reportHostAfterStart(config, log, gatingChecks, probes)
      .then(() => probes.save())
      .catch((err: unknown) => log.warn({ err: describeError(err) }, 'host checks after start failed'));
  }, AFTER_START_DELAY_MS);

  return {
    ctx,
    metricsPort,
    applyLiveConfig: (next) => applyLiveConfig(config, next, { network: podNetwork, streaming: ctx.streaming }),
    async stop() {
      clearTimeout(afterStart);
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
      nodeNetwork.close();
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
