// `berthd images import [--config FILE] [--admin-socket PATH] ARCHIVE|DIR|-`:
// sends a docker save archive, an OCI layout (a tar of it, or its directory) or
// standard input to the running berthd over its admin socket, and prints each
// imported image's id and names; with --offline, imports with no berthd running
// (an image build).
// `berthd images export [--config FILE] [--admin-socket PATH] IMAGE... -o FILE|-`
// (or `export IMAGE FILE|-`): writes the images as one OCI layout tar (with a
// docker-compatible manifest.json), into FILE only once all of it has arrived.
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DEFAULT_CONFIG_PATH, loadConfig } from './config';
import { adminSocketPath } from './admin-server';
import { importOffline } from './images-offline';

const USAGE = `usage: berthd images import [--config FILE] [--admin-socket PATH] [--offline] ARCHIVE|OCI-LAYOUT-DIR|-
       berthd images export [--config FILE] [--admin-socket PATH] IMAGE... -o FILE|-
       berthd images export [--config FILE] [--admin-socket PATH] IMAGE FILE|-`;

interface ImportAnswer {
  images?: { id: string; names: string[] }[];
  error?: string;
}

interface ImagesCli {
  configPath: string;
  explicit: boolean;
  socket?: string;
  command: 'import' | 'export';
  /** import: the archive; export: the images. */
  operands: string[];
  /** export: the file written, "-" for standard output. */
  output?: string;
  /** import: into the store directly, with no berthd running (images-offline.ts). */
  offline?: boolean;
}

function parse(args: string[]): ImagesCli {
  let configPath = DEFAULT_CONFIG_PATH;
  let explicit = false;
  let socket: string | undefined;
  let output: string | undefined;
  let offline = false;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (): string => {
      const v = arg.startsWith('--') && arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    if (arg === '--config' || arg.startsWith('--config=')) {
      configPath = value();
      explicit = true;
    } else if (arg === '--admin-socket' || arg.startsWith('--admin-socket=')) socket = value();
    else if (arg === '-o' || arg === '--output' || arg.startsWith('--output=')) output = value();
    else if (arg === '--offline') offline = true;
    else if (arg.startsWith('-') && arg !== '-') throw new Error(`unknown flag ${arg}\n${USAGE}`);
    else rest.push(arg);
  }
  const [command, ...operands] = rest;
  if (command === 'import' && operands.length === 1 && output === undefined) return { configPath, explicit, socket, command, operands, offline };
  if (command === 'export' && operands.length > 0 && !offline) {
    if (output !== undefined) return { configPath, explicit, socket, command, operands, output };
    // Without -o: IMAGE FILE|-, or one image to a standard output that is not a terminal.
    if (operands.length === 2) return { configPath, explicit, socket, command, operands: [operands[0]], output: operands[1] };
    if (operands.length > 2 || process.stdout.isTTY) throw new Error(`export: name the archive with -o FILE (or -o - for standard output)\n${USAGE}`);
    return { configPath, explicit, socket, command, operands, output: '-' };
  }
  throw new Error(USAGE);
}

/** The archive as a byte stream: stdin, a file, or a directory tarred on the fly. */
function openSource(source: string): Readable {
  if (source === '-') return process.stdin;
  const stat = statSync(source);
  if (!stat.isDirectory()) return createReadStream(source);
  const tar = spawn('tar', ['-C', source, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  tar.on('exit', (code) => {
    if (code !== 0) tar.stdout.destroy(new Error(`tar of ${source} exited ${code}`));
  });
  return tar.stdout;
}

/** One admin request; resolves with the response once its headers are in. */
function adminRequest(socket: string, path: string, body?: Readable): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': 'application/x-tar' } : {};
    const req = request({ socketPath: socket, method: body ? 'POST' : 'GET', path, headers }, resolve);
    req.on('error', (err) => reject(new Error(`cannot reach berthd's admin socket ${socket}: ${err.message} (is berthd running? are you root?)`)));
    if (!body) req.end();
    else {
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    }
  });
}

async function jsonAnswer(res: IncomingMessage): Promise<ImportAnswer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as ImportAnswer;
  } catch {
    throw new Error(`berthd answered ${res.statusCode} without JSON`);
  }
}

async function importArchive(socket: string, source: string): Promise<number> {
  const res = await adminRequest(socket, '/images/import', openSource(source));
  const answer = await jsonAnswer(res);
  if (res.statusCode !== 200) {
    process.stderr.write(`berthd: import failed: ${answer.error ?? `status ${res.statusCode}`}\n`);
    return 1;
  }
  for (const image of answer.images ?? []) process.stdout.write(`imported ${image.id} ${image.names.join(' ')}\n`.replace(/ \n$/, '\n'));
  return 0;
}

async function importWithoutDaemon(cli: ImagesCli, socket: string): Promise<number> {
  const { config } = loadConfig({ path: cli.configPath, explicit: cli.explicit, overrides: {} });
  for (const image of await importOffline(config, socket, openSource(cli.operands[0]))) {
    process.stdout.write(`imported ${image.id} ${image.names.join(' ')}\n`.replace(/ \n$/, '\n'));
  }
  return 0;
}

async function exportImages(socket: string, images: string[], output: string): Promise<number> {
  const res = await adminRequest(socket, `/images/export?${images.map((image) => `image=${encodeURIComponent(image)}`).join('&')}`);
  if (res.statusCode !== 200) {
    const answer = await jsonAnswer(res);
    process.stderr.write(`berthd: export failed: ${answer.error ?? `status ${res.statusCode}`}\n`);
    return 1;
  }
  if (output === '-') {
    await pipeline(res, process.stdout);
    return 0;
  }
  // Written aside and renamed: a cut transfer never leaves a FILE that looks whole.
  const partial = join(dirname(output), `.${output.split('/').pop()}.partial-${process.pid}`);
  try {
    await pipeline(res, createWriteStream(partial, { mode: 0o600 }));
    renameSync(partial, output);
  } catch (err) {
    rmSync(partial, { force: true });
    throw new Error(`export failed: the archive was cut short (${(err as Error).message}); see berthd's log`);
  }
  return 0;
}

export async function runImagesCommand(args: string[]): Promise<number> {
  let cli: ImagesCli;
  let socket: string;
  try {
    cli = parse(args);
    socket = cli.socket ?? adminSocketPath(loadConfig({ path: cli.configPath, explicit: cli.explicit, overrides: {} }).config.state);
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    if (cli.offline) return await importWithoutDaemon(cli, socket);
    return cli.command === 'import' ? await importArchive(socket, cli.operands[0]) : await exportImages(socket, cli.operands, cli.output!);
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 1;
  }
}
