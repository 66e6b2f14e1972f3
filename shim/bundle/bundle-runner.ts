// berthd's entry (what the launcher, shim/berthd-launcher.ts, starts): runs
// the bundle (bundle-build.ts) when it is current, else the compiled modules
// as they are. The bundle is one vm.Script; its module table gives each module
// a real node:module Module with its original filename, registered in Node's
// module cache, so path lookups beside it work, a require the bundle does not
// hold (a builtin, a native addon, better-sqlite3, a package's optional
// dependency) is Node's own from that module's place, and a file Node loads
// itself later finds the bundled instance.
// A launcher may start Node from berthd's startup snapshot (snapshot-entry.ts),
// whose main function runs this file as the main module all the same; the
// start record says whether it did, or why not (takeSnapshotState).
import Module = require('node:module');
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { BUNDLE_PATH, ENTRY_KEY, PACKAGE_ROOT, readBundle } from './bundle-file';
import { readCodeCache, recordStart, takeCodeCachePath, takeSnapshotRecheck, takeSnapshotState, type SnapshotRecheck, type StartRecord } from './code-cache';

type Wrapper = (exports: unknown, require: NodeJS.Require, module: Module, __filename: string, __dirname: string) => void;

/** What the bundle's expression evaluates to. */
export interface BundleTable {
  entry: string;
  modules: Record<string, [Wrapper, Record<string, string>]>;
}

/** The parts of node:module a loader needs that its types leave out. */
interface ModuleInternals {
  _cache: Record<string, Module>;
  _extensions: NodeJS.RequireExtensions;
  _nodeModulePaths(dir: string): string[];
  _resolveFilename(request: string, parent: Module, isMain: boolean, options?: { paths?: string[] }): string;
}
const internals = Module as unknown as ModuleInternals;

/** Loads the bundle's modules on demand, each once, as Node's loader would (cycles see partial exports). */
export class ModuleTable {
  private readonly loaded = new Map<string, Module>();
  private main: Module | undefined;

  constructor(
    private readonly table: BundleTable,
    private readonly root: string,
  ) {}

  /** Runs the bundle's entry as the main module. */
  runMain(parent: Module | undefined): unknown {
    return this.load(this.table.entry, parent);
  }

  load(key: string, parent: Module | undefined): unknown {
    const done = this.loaded.get(key);
    if (done) return done.exports;
    const found = this.table.modules[key];
    if (!found) throw new Error(`berthd bundle: no module ${key}`);
    const [wrapper, deps] = found;
    const filename = join(this.root, key);
    const dir = dirname(filename);
    const module = new Module(filename, parent);
    module.filename = filename;
    module.paths = internals._nodeModulePaths(dir);
    this.main ??= module;
    const require = this.requireOf(module, deps);
    this.loaded.set(key, module);
    internals._cache[filename] = module;
    try {
      wrapper.call(module.exports, module.exports, require, module, filename, dir);
    } catch (err) {
      this.loaded.delete(key);
      delete internals._cache[filename];
      throw err;
    }
    module.loaded = true;
    return module.exports;
  }

  private requireOf(module: Module, deps: Record<string, string>): NodeJS.Require {
    const require = ((specifier: string): unknown => {
      const key = deps[specifier];
      return key === undefined ? module.require(specifier) : this.load(key, module);
    }) as NodeJS.Require;
    const resolve = ((request: string, options?: { paths?: string[] }) => internals._resolveFilename(request, module, false, options)) as NodeJS.RequireResolve;
    resolve.paths = (request: string) => (Module as unknown as { _resolveLookupPaths(r: string, m: Module): string[] | null })._resolveLookupPaths(request, module);
    require.resolve = resolve;
    require.main = this.main;
    require.cache = internals._cache;
    require.extensions = internals._extensions;
    return require;
  }
}

export interface RunBundleOptions {
  /** The code cache file (undefined: none). */
  cachePath?: string;
  /** The module the bundle's entry is a child of (the runner's own, when it is the main module). */
  parent?: Module;
  /** Whether Node started from berthd's startup snapshot, or why not (takeSnapshotState), for the start record. */
  snapshot?: string;
  /** The blob to check after the start (takeSnapshotRecheck), for the start record. */
  snapshotRecheck?: SnapshotRecheck;
}

/** Compiles and runs the bundle at path (with the code cache when it fits), or says why it did not. */
export function runBundle(path: string, root: string, options: RunBundleOptions = {}): StartRecord {
  const started = performance.now();
  const bundle = readBundle(path, root);
  const { cachePath, parent, snapshot, snapshotRecheck } = options;
  if ('stale' in bundle) return recordStart({ bundle: `not used: ${bundle.stale}`, snapshot, snapshotRecheck });
  const cache = readCodeCache(cachePath, bundle.manifest.sha256);
  // V8 checks a cache against its version, its flags and the source, and compiles without it when it does not fit.
  const script = new Script(bundle.text, { filename: path, cachedData: cache.data });
  const codeCache = cache.data === undefined ? cache.reason : script.cachedDataRejected ? 'rejected by V8' : 'used';
  const table = script.runInThisContext() as BundleTable;
  const record = recordStart({ bundle: 'used', codeCache, compileMs: Math.round((performance.now() - started) * 10) / 10, script, sha256: bundle.manifest.sha256, cachePath, snapshot, snapshotRecheck });
  new ModuleTable(table, root).runMain(parent);
  return record;
}

if (require.main === module) {
  const record = runBundle(BUNDLE_PATH, PACKAGE_ROOT, { cachePath: takeCodeCachePath(), parent: module, snapshot: takeSnapshotState(), snapshotRecheck: takeSnapshotRecheck() });
  // A tsc-only build (or no bundle): the compiled modules as they are, which the bundle would have held.
  if (record.bundle !== 'used') require(join(PACKAGE_ROOT, ENTRY_KEY));
}
