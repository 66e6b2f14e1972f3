#!/usr/bin/env node
// berthd: the CRI daemon's command line.
//   berthd [--config FILE] [--socket PATH] [--root DIR] [--state DIR] [--log-level L] [--set key=value]...
//   berthd config default         print the complete default config with a comment per key
//   berthd config check [FILE]    validate a config file (and its drop-ins) and print the effective config,
//                                 each key with the file that set it
//   berthd doctor                 check this host for berth and a kubelet (exit 0 ok, 1 warnings, 2 failures)
//   berthd version                berth's version and commit, Node's, and the conmon/runc/crun found
//   berthd images import ...      load images through the running daemon (shim/images-cli.ts)
// Each command's code is loaded when it runs: the daemon loads none of the
// commands', a command none of the daemon's (a restart is mostly module loading).
import { ConfigError, DEFAULT_CONFIG_PATH, defaultConfig, type LoadedConfig, loadConfig, parseOverrideValue } from './config';

const USAGE = `usage: berthd [options]
       berthd config default | config check [FILE] [--json]
       berthd doctor [--json] [--host-root DIR]
       berthd version [--json]
       berthd images import ARCHIVE|OCI-LAYOUT-DIR|-    (through the running berthd's admin socket)
       berthd images export IMAGE... -o FILE|-          (one OCI layout tar; also: images export IMAGE FILE|-)
options:
  --config FILE        config file (default ${DEFAULT_CONFIG_PATH}; missing default file = all defaults);
                       FILE.d/*.toml are applied after it, in lexical order
  --socket PATH        CRI socket (config: socket)
  --root DIR           persistent state (config: root)
  --state DIR          volatile state (config: state)
  --log-level LEVEL    trace|debug|info|warn|error|fatal (config: log_level)
  --log-format FORMAT  auto|text|json (config: log_format)
  --metrics-port N     metrics port, 0 for any (config: metrics.port)
  --set KEY=VALUE      any config key, e.g. --set image.max_concurrent_downloads=8
  --json               doctor, version, config check: print JSON
  --host-root DIR      doctor: read the host under DIR instead of /
signals: SIGTERM/SIGINT stop serving (containers keep running); SIGHUP reloads the config`;

const FLAG_KEYS: Record<string, string> = {
  '--socket': 'socket',
  '--root': 'root',
  '--state': 'state',
  '--log-level': 'log_level',
  '--log-format': 'log_format',
  '--metrics-port': 'metrics.port',
};

export interface Cli {
  command: 'serve' | 'config-default' | 'config-check' | 'doctor' | 'version' | 'help';
  configPath: string;
  explicitConfig: boolean;
  overrides: Record<string, ReturnType<typeof parseOverrideValue>>;
  json: boolean;
  hostRoot: string;
}

function parseArgs(argv: string[]): Cli {
  const cli: Cli = { command: 'serve', configPath: DEFAULT_CONFIG_PATH, explicitConfig: false, overrides: {}, json: false, hostRoot: '/' };
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
    else if (flag === '--host-root') cli.hostRoot = value();
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
  const [first, second, third] = positional;
  if (first === 'config' && second === 'default' && !third) cli.command = 'config-default';
  else if (first === 'config' && second === 'check' && positional.length <= 3) {
    cli.command = 'config-check';
    if (third) {
      cli.configPath = third;
      cli.explicitConfig = true;
    }
  } else if ((first === 'doctor' || first === 'version') && positional.length === 1) cli.command = first;
  else if (positional.length > 0) throw new ConfigError(`unknown command "${positional.join(' ')}"\n${USAGE}`);
  return cli;
}

/**
 * A reader that stops reading (`berthd version | head -1`) closes the pipe:
 * the commands' output ends there, quietly, as a shell tool's would. Only the
 * commands write through process.stdout; the daemon's log (logger.ts) writes
 * to fd 1 on its own and outlives a closed pipe.
 */
function endQuietlyWhenStdoutCloses(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    process.stderr.write(`berthd: writing the output: ${err.message}\n`);
    process.exit(1);
  });
}

async function main(): Promise<number> {
  endQuietlyWhenStdoutCloses();
  // A client of the running daemon (its admin socket), not a daemon: see images-cli.ts.
  if (process.argv[2] === 'images') return (await import('./images-cli')).runImagesCommand(process.argv.slice(3));
  let cli: Cli;
  try {
    cli = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  if (cli.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (cli.command === 'config-default') {
    process.stdout.write((await import('./config-render')).renderDefaultConfig());
    return 0;
  }
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ path: cli.configPath, explicit: cli.explicitConfig, overrides: cli.overrides });
  } catch (err) {
    if (cli.command === 'version') {
      // The version of berth does not depend on the config: report it with the default binaries.
      process.stderr.write(`berthd: ${(err as Error).message} (showing the default binaries)\n`);
      return (await import('./cli-commands')).versionCommand(defaultConfig(), cli);
    }
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  switch (cli.command) {
    case 'config-check': {
      const { configCheckJson, renderConfigCheck } = await import('./config-render');
      process.stdout.write(cli.json ? configCheckJson(loaded) : renderConfigCheck(loaded));
      return 0;
    }
    case 'doctor':
      for (const warning of loaded.warnings) process.stderr.write(`berthd: config: ${warning}\n`);
      return (await import('./cli-commands')).doctorCommand(loaded.config, cli);
    case 'version':
      return (await import('./cli-commands')).versionCommand(loaded.config, cli);
    default:
      return (await import('./berthd-serve')).serve(loaded, { path: cli.configPath, explicit: cli.explicitConfig, overrides: cli.overrides });
  }
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
