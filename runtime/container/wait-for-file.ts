// Waiting for a file another process writes (conmon's reopened log, runtime
// exec's pid file) by watching its directory, never by polling.
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** Resolves true once `path` exists, false after `timeoutMs` or once `abort` settles without it. */
export function waitForFile(path: string, timeoutMs: number, abort?: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (found: boolean): void => {
      if (done) return;
      done = true;
      watcher?.close();
      clearTimeout(timer);
      resolve(found);
    };
    const look = (): void => {
      if (existsSync(path)) finish(true);
    };
    try {
      watcher = watch(dirname(path), look);
      watcher.on('error', () => finish(existsSync(path)));
    } catch {
      return resolve(existsSync(path));
    }
    timer = setTimeout(() => finish(existsSync(path)), timeoutMs);
    void abort?.then(() => finish(existsSync(path)), () => finish(existsSync(path)));
    look();
  });
}
