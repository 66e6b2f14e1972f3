// Writes the checkpoint archive (layout in checkpoint-layout.ts) from a
// checkpoint's work directory: the files berth wrote there (config.dump,
// spec.dump), criu's images and dump.log, and the rootfs diff made here. Runs
// on a worker thread (checkpoint-worker.ts): blocking calls cost nothing there.
import * as fs from 'node:fs';
import { posix } from 'node:path';
import type { BerthNative } from '../../native';
import { tarEnd, tarEntryHeader, writeTarFileBody } from '../image/archive-writer';
import { ARCHIVE } from './checkpoint-layout';
import { writeRootfsDiff, type RootfsDiffOptions } from './rootfs-diff';

const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
const CHUNK = 1024 * 1024;

export interface CheckpointExport {
  /** Holds config.dump and spec.dump; rootfs-diff.tar and deleted.files are made in it. */
  workDir: string;
  /** criu's --images-dir. */
  imagesDir: string;
  /** criu's log of the dump. */
  dumpLog: string;
  diff: Omit<RootfsDiffOptions, 'tarPath'>;
  /** The archive file, made here (O_EXCL|O_NOFOLLOW, mode 0600: it holds the processes' memory). */
  archivePath: string;
}

export interface CheckpointExportResult {
  archiveBytes: number;
  imageFiles: number;
  diffEntries: number;
  deletedPaths: number;
}

export function exportCheckpoint(native: BerthNative, job: CheckpointExport): CheckpointExportResult {
  const diffTar = posix.join(job.workDir, ARCHIVE.rootfsDiff);
  const deletedFile = posix.join(job.workDir, ARCHIVE.deletedFiles);
  const diff = writeRootfsDiff(native, { ...job.diff, tarPath: diffTar });
  fs.writeFileSync(deletedFile, JSON.stringify(diff.deleted), { flag: 'wx', mode: 0o600 });

  const out = fs.openSync(job.archivePath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  let archiveBytes = 0;
  const write = (data: Buffer): void => {
    let at = 0;
    while (at < data.length) at += fs.writeSync(out, data, at, data.length - at);
    archiveBytes += data.length;
  };
  const mtime = Math.floor(Date.now() / 1000);
  const buffer = Buffer.alloc(CHUNK);
  const addFile = (name: string, path: string): boolean => {
    let fd: number;
    try {
      fd = fs.openSync(path, READ_FLAGS);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return false;
      write(tarEntryHeader({ name, type: 'file', mode: 0o600, uid: 0, gid: 0, size: st.size, mtime }));
      writeTarFileBody(fd, st.size, buffer, write);
      return true;
    } finally {
      fs.closeSync(fd);
    }
  };
  let imageFiles = 0;
  try {
    addFile(ARCHIVE.configDump, posix.join(job.workDir, ARCHIVE.configDump));
    addFile(ARCHIVE.specDump, posix.join(job.workDir, ARCHIVE.specDump));
    addFile(ARCHIVE.dumpLog, job.dumpLog);
    write(tarEntryHeader({ name: ARCHIVE.images, type: 'dir', mode: 0o700, uid: 0, gid: 0, size: 0, mtime }));
    for (const name of fs.readdirSync(job.imagesDir).sort()) {
      if (addFile(`${ARCHIVE.images}/${name}`, posix.join(job.imagesDir, name))) imageFiles++;
    }
    addFile(ARCHIVE.rootfsDiff, diffTar);
    addFile(ARCHIVE.deletedFiles, deletedFile);
    write(tarEnd());
    fs.fsyncSync(out);
  } finally {
    fs.closeSync(out);
  }
  return { archiveBytes, imageFiles, diffEntries: diff.entries, deletedPaths: diff.deleted.length };
}
