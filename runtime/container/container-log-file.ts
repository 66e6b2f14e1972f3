// A container's log file, at the path its request names (the pod's
// log_directory joined with the container's log_path). conmon opens the file
// by path, following symlinks, at create and again at every
// ReopenContainerLog: so berth makes the file itself first, relative to
// directory fds with O_NOFOLLOW (native prepareLogFile), and after conmon has
// opened it checks that conmon holds that very file. A link planted anywhere
// in the log tree, at create or between a rotation and the reopen, is refused
// before conmon writes a byte through it.
import { readdirSync, statSync } from 'node:fs';
import type { BerthNative, NativeError } from '../../native';
import { describeError, internal, invalidArgument } from '../errors';
import { logPathParts } from './container-request-validation';

const ELOOP = 40;
const EXDEV = 18;
const EINVAL = 22;
const ENOTDIR = 20;
const ENOENT = 2;
const EISDIR = 21;

/** Where a container logs: under the pod's log directory (no symlink anywhere), or berth's own bundle. */
export interface LogLocation {
  dir: string;
  relPath: string;
  /** The bundle's console.log: berth's own directory, whose path may go through links the admin made. */
  dirMayFollow: boolean;
}

export interface LogFileIdentity {
  dev: number;
  ino: number;
  /** Made by this call (a failed create removes it again). */
  created: boolean;
}

/** The log location of a request: INVALID_ARGUMENT for a log_directory with ".." or not absolute, a log_path leaving it. */
export function logLocationOf(logDirectory: string, logPath: string, bundleDir: string): LogLocation {
  if (!logDirectory || !logPath) return { dir: bundleDir, relPath: 'console.log', dirMayFollow: true };
  if (!logDirectory.startsWith('/')) throw invalidArgument(`log_directory: "${logDirectory}" must be absolute`);
  if (logDirectory.split('/').includes('..')) throw invalidArgument(`log_directory: "${logDirectory}" may not contain ".."`);
  return { dir: logDirectory, relPath: logPathParts(logPath).join('/'), dirMayFollow: false };
}

export function logFilePath(location: LogLocation): string {
  return `${location.dir.replace(/\/+$/, '')}/${location.relPath}`;
}

/** Makes (or finds) the log file without following any link: INVALID_ARGUMENT naming what is wrong. */
export function prepareLogFile(native: BerthNative, location: LogLocation): LogFileIdentity {
  return logFileAt(native, location, true)!;
}

/** The log file as it is (no link followed), undefined when it is not there; INVALID_ARGUMENT as prepareLogFile. */
export function existingLogFile(native: BerthNative, location: LogLocation): LogFileIdentity | undefined {
  return logFileAt(native, location, false);
}

function logFileAt(native: BerthNative, location: LogLocation, create: boolean): LogFileIdentity | undefined {
  try {
    return native.prepareLogFile(location.dir, location.relPath, { create, dirMayFollow: location.dirMayFollow });
  } catch (err) {
    const e = err as NativeError;
    if (!create && e.errno === ENOENT) return undefined;
    const where = e.path ?? logFilePath(location);
    switch (e.errno) {
      case ELOOP:
        throw invalidArgument(`log path: "${where}" is a symbolic link; log directories and files may not be links`);
      case ENOTDIR:
        throw invalidArgument(`log path: "${where}" is not a directory`);
      case EXDEV:
        throw invalidArgument(`log path: "${logFilePath(location)}" may not contain ".."`);
      case EINVAL:
        throw invalidArgument(`log path: ${describeError(err)}`);
      case EISDIR:
        throw invalidArgument(`log path: "${where}" is a directory, not a regular file`);
      default:
        throw internal(`preparing the log file ${logFilePath(location)}: ${describeError(err)}`, err);
    }
  }
}

/** Whether process `pid` (conmon) has the file of this identity open. */
export function processHoldsFile(pid: number, file: Pick<LogFileIdentity, 'dev' | 'ino'>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const st = statSync(`/proc/${pid}/fd/${fd}`);
      return st.dev === file.dev && st.ino === file.ino;
    } catch {
      return false;
    }
  });
}
