#!/usr/bin/env node
// berthd: the CRI daemon's command line.
//   berthd [--config FILE] [--socket PATH] [--root DIR] [--state DIR] [--log-level L] [--set key=value]...
//   berthd config default       print the complete default config with a comment per key
//   berthd config check [FILE]  validate a config file (and its drop-ins) and print the effective config,
//                               each key with the file that set it (--json: as JSON)
import { ConfigError, DEFAULT_CONFIG_PATH, type LoadedConfig, loadConfig, parseOverrideValue } from './config';
import { configCheckJson, renderConfigCheck, renderDefaultConfig } from './config-render';
import { createLogger, LogOutput } from './logger';
import { startDaemon } from './daemon';
import { BERTH_VERSION } from './runtime-info-rpcs';
import { runImagesCommand } from './images-cli';

const USAGE = `usage: berthd [options]
       berthd config default | config check [FILE] [--json] | version
       berthd images import ARCHIVE|OCI-LAYOUT-DIR|-   (through the running berthd's admin socket)
options:
  --config FILE        config file (default ${DEFAULT_CONFIG_PATH}; missing default file = all defaults);
                       FILE.d/*.toml are applied after it, in lexical order
  --socket PATH        CRI socket (config: socket)
  --root DIR           persistent state (config: root)
  --state DIR          volatile state (config: state)
  --log-level LEVEL    trace|debug|info|warn|error|fatal (config: log_level)
  --metrics-port N     metrics port, 0 for any (config: metrics.port)
  --set KEY=VALUE      any config key, e.g. --set image.max_concurrent_downloads=8`;

const FLAG_KEYS: Record<string, string> = {
  '--socket': 'socket',
  '--root': 'root',
  '--state': 'state',
  '--log-level': 'log_level',
  '--metrics-port': 'metrics.port',
};

interface Cli {
  command: 'serve' | 'config-default' | 'config-check' | 'version' | 'help';
  configPath: string;
  explicitConfig: boolean;
  overrides: Record<string, ReturnType<typeof parseOverrideValue>>;
  json: boolean;
}

function parseArgs(argv: string[]): Cli {
  const cli: Cli = { command: 'serve', configPath: DEFAULT_CONFIG_PATH, explicitConfig: false, overrides: {}, json: false };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') && !arg.startsWith('--set=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new ConfigError(`${flag} needs a value`);
      return v;
    };
    if (flag === '-h' || flag === '--help') cli.command = 'help';
    else if (flag === '--version') cli.command = 'version';
    else if (flag === '--json') cli.json = true;
    else if (flag === '--config') {
      cli.configPath = value();
      cli.explicitConfig = true;
    } else if (flag === '--set' || flag.startsWith('--set=')) {
      const pair = flag.startsWith('--set=') ? flag.slice(6) : value();
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new ConfigError(`--set expects KEY=VALUE, got "${pair}"`);
      const key = pair.slice(0, eq);
      cli.overrides[key] = parseOverrideValue(key, pair.slice(eq + 1));
    } else if (FLAG_KEYS[flag]) {
      cli.overrides[FLAG_KEYS[flag]] = parseOverrideValue(FLAG_KEYS[flag], value());
    } else if (flag.startsWith('-')) throw new ConfigError(`unknown flag ${flag}\n${USAGE}`);
    else positional.push(arg);
  }
  if (positional[0] === 'config' && positional[1] === 'default') cli.command = 'config-default';
  else if (positional[0] === 'config' && positional[1] === 'check') {
    cli.command = 'config-check';
    if (positional[2]) {
      cli.configPath = positional[2];
      cli.explicitConfig = true;
    }
  } else if (positional[0] === 'version') cli.command = 'version';
  else if (positional.length > 0) throw new ConfigError(`unknown command "${positional.join(' ')}"\n${USAGE}`);
  return cli;
}

async function main(): Promise<number> {
  // A client of the running daemon (its admin socket), not a daemon: see images-cli.ts.
  if (process.argv[2] === 'images') return runImagesCommand(process.argv.slice(3));
  let cli: Cli;
  try {
    cli = parseArgs(process.argv.slice(2));
    if (cli.command === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (cli.command === 'version') {
      process.stdout.write(`berthd ${BERTH_VERSION} (CRI v1)\n`);
      return 0;
    }
    if (cli.command === 'config-default') {
      process.stdout.write(renderDefaultConfig());
      return 0;
    }
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }

  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ path: cli.configPath, explicit: cli.explicitConfig, overrides: cli.overrides });
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  if (cli.command === 'config-check') {
    process.stdout.write(cli.json ? configCheckJson(loaded) : renderConfigCheck(loaded));
    return 0;
  }
  const { config } = loaded;

  const logOutput = new LogOutput(config.log_format);
  const log = createLogger(config.log_level, logOutput);
  log.info({ files: loaded.files }, `config: ${loaded.files.length ? loaded.files.join(', ') : 'defaults (no file)'}`);
  for (const warning of loaded.warnings) log.warn(`config: ${warning}`);
  // A bug in one handler must not take the node's runtime down with it: containers
  // would keep running under conmon, but the kubelet would lose its runtime.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (berthd keeps serving)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (berthd keeps serving)'));

  let daemon;
  try {
    daemon = await startDaemon(config, log);
  } catch (err) {
    log.fatal(`berthd cannot start: ${(err as Error).message}`);
    await new Promise((r) => setTimeout(r, 50));
    return 1;
  }
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'signal received');
      daemon.stop().then(
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

main().then(
  (code) => {
    // Let pino flush before leaving.
    setTimeout(() => process.exit(code), 20);
  },
  (err: unknown) => {
    process.stderr.write(`berthd: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
