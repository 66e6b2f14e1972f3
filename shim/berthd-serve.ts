// `berthd` serving: logs, the daemon, signals (SIGTERM/SIGINT stop, SIGHUP
// reloads the config), and systemd's notify protocol.
import type { ConfigSource, LoadedConfig } from './config';
import { reloadConfig } from './config-reload';
import { startDaemon } from './daemon';
import { createLogger, LogOutput } from './logger';
import { StartTimeline } from './start-timeline';
import { SystemdNotifier } from './systemd-notify';

export async function serve(loaded: LoadedConfig, source: ConfigSource): Promise<number> {
  const { config } = loaded;
  const logOutput = new LogOutput(config.log_format);
  const log = createLogger(config.log_level, logOutput);
  // Node's start, loading the modules and reading the config: everything before the first log line.
  const timeline = new StartTimeline(log);
  const systemd = SystemdNotifier.fromEnvironment(log);
  log.info({ files: loaded.files }, `config: ${loaded.files.length ? loaded.files.join(', ') : 'defaults (no file)'}`);
  for (const warning of loaded.warnings) log.warn(`config: ${warning}`);
  // A bug in one handler must not take the node's runtime down with it: containers
  // would keep running under conmon, but the kubelet would lose its runtime.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (berthd keeps serving)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (berthd keeps serving)'));
  // Until the daemon can reload, a SIGHUP must not kill it (Node's default).
  let reload = (): void => log.warn('SIGHUP while starting: ignored (send it again once berthd serves)');
  process.on('SIGHUP', () => reload());

  let daemon;
  try {
    daemon = await startDaemon(config, log, timeline);
  } catch (err) {
    log.fatal(`berthd cannot start: ${(err as Error).message}`);
    await new Promise((r) => setTimeout(r, 50));
    return 1;
  }
  systemd.ready(`serving CRI v1 on ${config.socket}`);
  const running = daemon;
  reload = () => {
    log.info({ signal: 'SIGHUP' }, 'signal received: reloading the configuration');
    systemd.reloading();
    const outcome = reloadConfig({ source, running: config, log, logOutput, applyLive: (next) => running.applyLiveConfig(next) });
    systemd.ready(outcome.error ? `serving CRI v1 on ${config.socket}; last reload failed: ${outcome.error}` : `serving CRI v1 on ${config.socket}`);
  };

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'signal received');
      systemd.stopping();
      running.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
