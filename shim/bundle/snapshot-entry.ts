// The script Node runs to build berthd's startup snapshot (snapshot-build.ts:
// `node <berthd's V8 flags> --snapshot-blob BLOB --build-snapshot snapshot-entry.js`).
// It loads the Node builtins berthd loads before serving, so a start from the
// snapshot finds them loaded instead of compiling each from source: berthd's
// V8 flags make V8 refuse Node's own code cache of its builtins (bench/README.md,
// "Start time", session 5). Its main function, run in place of a main script
// when Node starts from the snapshot, runs the launcher's entry (the bundle's
// runner, the first argument) as the main module, as `node ENTRY` would.
//
// Node runs this file with a require that only knows builtins: it requires
// nothing of berth's. It reads no host state and holds none: what it loads
// is what every process of this Node.js and these flags would load the same.
// Left out: http (and what only it loads), whose parser binding Node 20
// cannot snapshot; worker_threads, whose main-thread module keeps a counter
// shared with workers that a snapshot does not restore (a worker's
// process.cwd() then throws: the layer workers did); and builtins that read
// the environment at load time (none of the ones listed below does: cluster
// decides primary or worker from NODE_UNIQUE_ID, which berthd never has).
// snapshot-build.ts's check starts a worker from a new blob before using it.
//
// A script, not a module (no import or export: Node's builder gives it no
// `exports`), so everything is inside one block.
{
const v8 = require('node:v8') as typeof import('node:v8');
const Module = require('node:module') as typeof import('node:module');

/** The builtins the snapshot holds: what berthd loads before serving (process.moduleLoadList), bar http and worker_threads. */
const BUILTINS = [
  'node:fs', 'node:fs/promises', 'node:path', 'node:os', 'node:util', 'node:events', 'node:buffer', 'node:stream',
  'node:stream/promises', 'node:string_decoder', 'node:net', 'node:dgram', 'node:child_process', 'node:crypto',
  'node:timers/promises', 'node:zlib', 'node:tty', 'node:assert', 'node:dns', 'node:cluster',
  'node:perf_hooks', 'node:vm', 'node:url', 'node:querystring', 'node:diagnostics_channel', 'node:async_hooks',
  'node:readline',
];

/** What the runner reads (bundle-runner.ts) to say the start was from the snapshot. Kept on a global symbol. */
const SNAPSHOT = Symbol.for('berth.snapshot');
/** The launcher names the file it made before starting Node from the snapshot; removed here, once berthd's code runs. */
const PENDING_ENV = 'BERTH_SNAPSHOT_PENDING';
/** snapshot-build.ts's check of a new blob: start from it, say what it holds, exit. */
const CHECK_ENV = 'BERTH_SNAPSHOT_CHECK';

for (const builtin of BUILTINS) require(builtin);
const built = { node: process.version, builtins: BUILTINS.length };

v8.startupSnapshot.setDeserializeMainFunction(() => {
  const pending = process.env[PENDING_ENV];
  delete process.env[PENDING_ENV];
  if (pending) {
    try {
      require('node:fs').unlinkSync(pending);
    } catch {
      // another berthd started from the snapshot removed it
    }
  }
  if (process.env[CHECK_ENV]) {
    // berthd's layer workers: a worker thread of a process started from the blob must run (and know its cwd).
    const { Worker } = require('node:worker_threads') as typeof import('node:worker_threads');
    const worker = new Worker('require("node:worker_threads").parentPort.postMessage(process.cwd())', { eval: true });
    worker.once('message', (cwd: unknown) => {
      const loaded = (process as unknown as { moduleLoadList: string[] }).moduleLoadList.length;
      process.stdout.write(`${JSON.stringify({ ...built, loaded, workerCwd: cwd === process.cwd() })}\n`);
      void worker.terminate();
    });
    worker.once('error', (err: Error) => {
      process.stderr.write(`a worker thread failed: ${err.message}\n`);
      process.exitCode = 1;
    });
    return;
  }
  (globalThis as { [SNAPSHOT]?: unknown })[SNAPSHOT] = built;
  // process.argv is [node, ENTRY, ...berthd's arguments], as for `node ENTRY ...`; Node makes ENTRY absolute
  // before it runs a main script, and does not here.
  const entry = process.argv[1];
  if (entry === undefined) throw new Error('berthd snapshot: no entry to run (the launcher names the runner)');
  process.argv[1] = require('node:path').resolve(entry);
  (Module as unknown as { runMain(main?: string): void }).runMain(process.argv[1]);
});
}
