// Runs one CNI plugin binary the way the spec says: the command and its
// parameters in CNI_* environment variables, the network config on stdin, a
// result (or an error JSON) on stdout.
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { runCommand, type CommandResult } from '../native/run-command';
import { CniPluginError } from './cni-error';
import type { CniErrorBody } from './cni-types';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

export interface PluginCall {
  command: CniCommand;
  containerId?: string;
  netnsPath?: string;
  ifName?: string;
  args?: [string, string][];
  /** The config handed on stdin. */
  stdin: object;
}

/** Where a plugin binary lives: the first bin dir that has an executable of that name. */
export function findPlugin(binDirs: readonly string[], type: string): string | undefined {
  if (!/^[A-Za-z0-9._-]+$/.test(type)) return undefined;
  for (const dir of binDirs) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next dir
    }
  }
  return undefined;
}

export function formatCniArgs(args: readonly [string, string][]): string {
  return args.map(([k, v]) => `${k}=${v}`).join(';');
}

const PLUGIN_TIMEOUT_MS = 120_000;
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/** Runs the plugin; resolves with its parsed stdout (undefined when empty), rejects with a CniPluginError. */
export function execPlugin(binDirs: readonly string[], type: string, call: PluginCall): Promise<unknown> {
  const path = findPlugin(binDirs, type);
  if (!path) {
    return Promise.reject(
      new CniPluginError(type, call.command, { code: 0, msg: `failed to find plugin "${type}" in path [${binDirs.join(' ')}]` }),
    );
  }
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_PATH: binDirs.join(':'),
  };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netnsPath !== undefined) env.CNI_NETNS = call.netnsPath;
  if (call.ifName !== undefined) env.CNI_IFNAME = call.ifName;
  if (call.args && call.args.length > 0) env.CNI_ARGS = formatCniArgs(call.args);

  return runPlugin(path, type, call, env);
}

async function runPlugin(path: string, type: string, call: PluginCall, env: Record<string, string>): Promise<unknown> {
  let result: CommandResult;
  try {
    result = await runCommand(path, [], { env, input: JSON.stringify(call.stdin), timeoutMs: PLUGIN_TIMEOUT_MS, maxOutputBytes: MAX_OUTPUT_BYTES });
  } catch (e) {
    throw new CniPluginError(type, call.command, { code: 0, msg: e instanceof Error ? e.message : String(e) });
  }
  const stdout = result.stdout.toString('utf8').trim();
  const stderr = result.stderr.toString('utf8').trim();
  let parsed: unknown;
  if (stdout) {
    try {
      parsed = JSON.parse(stdout);
    } catch {
      parsed = undefined;
    }
  }
  if (result.code === 0) {
    if (stdout && parsed === undefined) throw new CniPluginError(type, call.command, { code: 0, msg: `unparsable output: ${stdout.slice(0, 200)}` });
    return parsed;
  }
  if (isErrorBody(parsed)) throw new CniPluginError(type, call.command, parsed);
  const why = result.signal ? `killed by ${result.signal}` : `exit status ${result.code}`;
  const text = stdout || stderr;
  throw new CniPluginError(type, call.command, { code: 0, msg: why, details: text ? text.slice(0, 500) : undefined });
}

function isErrorBody(value: unknown): value is CniErrorBody {
  return typeof value === 'object' && value !== null && typeof (value as CniErrorBody).code === 'number' && typeof (value as CniErrorBody).msg === 'string';
}
