// `berthd images import [--config FILE] [--admin-socket PATH] ARCHIVE|DIR|-`:
// sends a docker save archive, an OCI layout (a tar of it, or its directory) or
// standard input to the running berthd over its admin socket, and prints each
// imported image's id and names. `berthd images export IMAGE FILE|-` writes an
// image as an OCI layout tar (with docker's manifest.json beside it).
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import type { Readable } from 'node:stream';
import { DEFAULT_CONFIG_PATH, loadConfig } from './config';
import { adminSocketPath } from './admin-server';

const USAGE = `usage: berthd images import [--config FILE] [--admin-socket PATH] ARCHIVE|OCI-LAYOUT-DIR|-
       berthd images export [--config FILE] [--admin-socket PATH] IMAGE FILE|-`;

interface ImportAnswer {
  images?: { id: string; names: string[] }[];
  error?: string;
}

function parse(args: string[]): { configPath: string; explicit: boolean; socket?: string; command: 'import' | 'export'; operands: string[] } {
  let configPath = DEFAULT_CONFIG_PATH;
  let explicit = false;
  let socket: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (): string => {
      const v = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    if (arg === '--config' || arg.startsWith('--config=')) {
      configPath = value();
      explicit = true;
    } else if (arg === '--admin-socket' || arg.startsWith('--admin-socket=')) socket = value();
    else if (arg.startsWith('-') && arg !== '-') throw new Error(`unknown flag ${arg}\n${USAGE}`);
    else rest.push(arg);
  }
  if (!((rest[0] === 'import' && rest.length === 2) || (rest[0] === 'export' && rest.length === 3))) throw new Error(USAGE);
  return { configPath, explicit, socket, command: rest[0], operands: rest.slice(1) };
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

export async function runImagesCommand(args: string[]): Promise<number> {
  let socket: string;
  let body: Readable | undefined;
  let cli: ReturnType<typeof parse>;
  try {
    cli = parse(args);
    socket = cli.socket ?? adminSocketPath(loadConfig({ path: cli.configPath, explicit: cli.explicit, overrides: {} }).config.state);
    if (cli.command === 'import') body = openSource(cli.operands[0]);
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  if (!body) return exportImage(socket, cli.operands[0], cli.operands[1]);
  const source = body;
  try {
    const answer = await new Promise<{ status: number; body: ImportAnswer }>((resolve, reject) => {
      const req = request({ socketPath: socket, method: 'POST', path: '/images/import', headers: { 'content-type': 'application/x-tar' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as ImportAnswer });
          } catch {
            reject(new Error(`berthd answered ${res.statusCode} without JSON`));
          }
        });
      });
      req.on('error', (err) => reject(new Error(`cannot reach berthd's admin socket ${socket}: ${err.message} (is berthd running? are you root?)`)));
      source.on('error', (err) => req.destroy(err));
      source.pipe(req);
    });
    if (answer.status !== 200) {
      process.stderr.write(`berthd: import failed: ${answer.body.error ?? `status ${answer.status}`}\n`);
      return 1;
    }
    for (const image of answer.body.images ?? []) process.stdout.write(`imported ${image.id} ${image.names.join(' ')}\n`.replace(/ \n$/, '\n'));
    return 0;
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 1;
  }
}

/** GETs the image's tar from the admin socket into a file (written whole, then renamed) or stdout. */
async function exportImage(socket: string, image: string, target: string): Promise<number> {
  const temp = target === '-' ? '' : `${target}.partial-${process.pid}`;
  try {
    await new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: socket, method: 'GET', path: `/images/export?image=${encodeURIComponent(image)}` }, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let message = `status ${res.statusCode}`;
            try {
              message = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as ImportAnswer).error ?? message;
            } catch {
              // not JSON: keep the status
            }
            reject(new Error(`export failed: ${message}`));
          });
          return;
        }
        const out = temp ? createWriteStream(temp, { mode: 0o600 }) : process.stdout;
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('export failed: berthd closed the stream early')));
        out.on('error', reject);
        res.pipe(out);
        res.on('end', () => (temp ? out.on('finish', resolve) : resolve()));
      });
      req.on('error', (err) => reject(new Error(`cannot reach berthd's admin socket ${socket}: ${err.message} (is berthd running? are you root?)`)));
      req.end();
    });
    if (temp) renameSync(temp, target);
    return 0;
  } catch (err) {
    if (temp) rmSync(temp, { force: true });
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 1;
  }
}
