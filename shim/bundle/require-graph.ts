// The require() graph of berthd's entry, as the bundle build sees it: every
// module reachable through a require() with a string literal (tsc emits
// `import` as one, and a lowered `import()` as one inside a function: the
// CLI commands' code is in the graph but runs only when its command does).
// Each module is either inlined in the bundle or left to Node's own require:
// builtins, native addons, and packages that find their own files from the
// call stack (better-sqlite3 through `bindings`: inlined, the stack would
// name the bundle, not the package). Everything else keeps its original
// path as __filename, so path lookups beside it (dist/cri-proto/api.json,
// native/build, pino's and thread-stream's worker files) work unchanged.
// A require of berth's own code that does not resolve is a build error, and
// so is an import() in it; a computed require (the native addon's path) is
// Node's at run time. A literal require that does not resolve inside a package (an optional dependency, a platform's module) is left to
// Node at run time, where it fails or not exactly as it would unbundled.
import { readFileSync, realpathSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { join, relative, sep } from 'node:path';
import * as ts from 'typescript';

/** Packages Node loads itself (not inlined), with why. */
export const REAL_PACKAGES: Readonly<Record<string, string>> = {
  // better-sqlite3 itself is inlined: berth names its addon (runtime/store/database.ts), so bindings is not called.
  bindings: 'finds the calling package from the call stack, which would name the bundle',
  'file-uri-to-path': 'only used by bindings',
  // Large, and loaded only on demand: inlined they would be read and kept in memory at every start for nothing.
  undici: 'the registry client\'s, loaded at the first pull (112 modules, 1.2 MB)',
  '@grpc/grpc-js': 'only the CRI client constructors for tests and bench (65 modules, 670 KB)',
  '@grpc/proto-loader': 'only with @grpc/grpc-js',
  '@opentelemetry/api': 'only Node\'s process metrics (prom-client), loaded after serving',
};

export interface GraphModule {
  /** Path relative to the package root, with / (the bundle's key; __filename is root + key at run time). */
  key: string;
  /** Absolute path read at build time. */
  file: string;
  kind: 'js' | 'json';
  source: string;
  /** Each inlined dependency: the specifier as written -> its key. Specifiers not here go to Node's require. */
  deps: Record<string, string>;
}

export interface RequireGraph {
  root: string;
  entry: string;
  modules: Map<string, GraphModule>;
  /** Specifiers left to Node's require, by the module that asks (for the build's report). */
  external: Map<string, string[]>;
}

export class BundleError extends Error {}

export interface RequireCall {
  specifier: string;
  /** Source position, for messages. */
  line: number;
}

/** A CommonJS source's require() calls with a string literal, and the lines of its other require() and import() calls. */
export function findRequires(source: string, fileName: string): { literal: RequireCall[]; dynamic: number[]; imports: number[] } {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const literal: RequireCall[] = [];
  const dynamic: number[] = [];
  const imports: number[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      if (isRequire || isImport) {
        const line = file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1;
        const [arg] = node.arguments;
        if (isImport) imports.push(line);
        else if (arg && (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg))) literal.push({ specifier: arg.text, line });
        else dynamic.push(line);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return { literal, dynamic, imports };
}

/** The package a file belongs to (name as in node_modules), or undefined for berth's own files. */
export function packageOf(key: string): string | undefined {
  const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*\/node_modules\/)/.exec(key);
  return match?.[1];
}

/** Maps an absolute (real) path to its key under root, or undefined when it is outside root. */
function keyMapper(root: string): (file: string) => string | undefined {
  const realRoot = realpathSync(root);
  let realModules: string | undefined;
  try {
    realModules = realpathSync(join(root, 'node_modules'));
  } catch {
    // no node_modules
  }
  const under = (base: string, file: string): string | undefined => (file.startsWith(base + sep) ? relative(base, file).split(sep).join('/') : undefined);
  return (file) => {
    // node_modules may be a link out of the tree (a worktree's shared node_modules): keep the in-tree name.
    const inModules = realModules === undefined ? undefined : under(realModules, file);
    if (inModules !== undefined) return `node_modules/${inModules}`;
    return under(realRoot, file) ?? under(root, file);
  };
}

/** Walks the graph from entry (absolute path) under root (the package root: the dir holding dist/ and node_modules/). */
export function buildRequireGraph(root: string, entry: string): RequireGraph {
  // A package with an import() of its own is left whole to Node (vm.Script code has no module loader behind
  // import()): found during a walk, it is added here and the walk starts over.
  const realPackages = new Set(Object.keys(REAL_PACKAGES));
  for (;;) {
    const graph = walk(root, entry, realPackages);
    if (!(graph instanceof Set)) return graph;
    for (const pkg of graph) realPackages.add(pkg);
  }
}

function walk(root: string, entry: string, realPackages: ReadonlySet<string>): RequireGraph | Set<string> {
  const toKey = keyMapper(root);
  const entryKey = toKey(realpathSync(entry));
  if (!entryKey) throw new BundleError(`${entry} is not under ${root}`);
  const graph: RequireGraph = { root, entry: entryKey, modules: new Map(), external: new Map() };
  const queue: Array<{ key: string; file: string }> = [{ key: entryKey, file: realpathSync(entry) }];
  const leftToNode = (key: string, specifier: string): void => {
    const list = graph.external.get(key) ?? [];
    list.push(specifier);
    graph.external.set(key, list);
  };
  while (queue.length) {
    const { key, file } = queue.shift()!;
    if (graph.modules.has(key)) continue;
    const source = readFileSync(file, 'utf8');
    if (file.endsWith('.json')) {
      graph.modules.set(key, { key, file, kind: 'json', source, deps: {} });
      continue;
    }
    const module: GraphModule = { key, file, kind: 'js', source, deps: {} };
    graph.modules.set(key, module);
    const pkg = packageOf(key);
    const { literal, dynamic, imports } = findRequires(source, file);
    if (pkg === undefined && imports.length) throw new BundleError(`${key}:${imports[0]}: import() cannot be bundled (tsc emits require() for CommonJS)`);
    if (pkg !== undefined && imports.length) return new Set([pkg]);
    // A computed require (the native addon's path) is Node's at run time, from this module's place.
    for (const line of dynamic) leftToNode(key, `<computed, line ${line}>`);
    const resolver = createRequire(file);
    for (const { specifier, line } of literal) {
      if (specifier in module.deps) continue;
      if (isBuiltin(specifier)) {
        leftToNode(key, specifier);
        continue;
      }
      let resolved: string;
      try {
        resolved = resolver.resolve(specifier);
      } catch (err) {
        if (pkg === undefined) throw new BundleError(`${key}:${line}: require('${specifier}') does not resolve: ${(err as Error).message.split('\n')[0]}`);
        leftToNode(key, specifier);
        continue;
      }
      const depKey = toKey(resolved);
      const depPkg = depKey === undefined ? undefined : packageOf(depKey);
      if (depKey === undefined || resolved.endsWith('.node') || (depPkg !== undefined && realPackages.has(depPkg)) || !/\.(c?js|json)$/.test(resolved)) {
        leftToNode(key, specifier);
        continue;
      }
      module.deps[specifier] = depKey;
      queue.push({ key: depKey, file: resolved });
    }
  }
  return graph;
}
