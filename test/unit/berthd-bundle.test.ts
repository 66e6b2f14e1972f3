// berthd's bundle (shim/bundle/): the require() graph, the bundle's file and
// its runner, on small package trees written here, run in this process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { asciiOnly, compactCode, writeBundle } from '../../shim/bundle/bundle-build';
import { ENTRY_KEY, readBundle } from '../../shim/bundle/bundle-file';
import { runBundle } from '../../shim/bundle/bundle-runner';
import { BundleError, buildRequireGraph, findRequires } from '../../shim/bundle/require-graph';
import { PACKAGE_ROOT } from '../../shim/bundle/bundle-file';

const dir = mkdtempSync('/tmp/berth-bundle-');
after(() => rmSync(dir, { recursive: true, force: true }));

let trees = 0;
/** A package tree under dir: files by path from its root. */
function tree(files: Record<string, string>): string {
  const root = join(dir, `tree-${++trees}`);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

/** The exports of a module the bundle's table loaded (it registers each in Node's module cache). */
function exportsOf(root: string, key: string): Record<string, unknown> {
  const loaded = require.cache[join(root, key)];
  assert.ok(loaded, `${key} was loaded`);
  return loaded.exports as Record<string, unknown>;
}

test('findRequires finds literal requires at any depth, tsc\'s lowered import(), and reports computed ones', () => {
  const source = [
    'const a = require("./a");',
    '// require("./in-a-comment")',
    'const text = "require(\'./in-a-string\')";',
    'function later() { return require(`./b`); }',
    'const c = () => Promise.resolve().then(() => __importStar(require(\'./c\')));',
    'index.require("not-a-require");',
    'const d = require(ADDON_PATH);',
  ].join('\n');
  const found = findRequires(source, 'x.js');
  assert.deepEqual(found.literal.map((r) => r.specifier), ['./a', './b', './c']);
  assert.deepEqual(found.dynamic, [7]);
  assert.deepEqual(found.imports, []);
});

test('asciiOnly writes non-ASCII characters as escapes with the same values in strings, templates and regular expressions', () => {
  const source = '["→", `a→${1}`, "\\→", "😀", /é+/.test("éé"), /😀/u.test("😀"), "\\\\→"]';
  const escaped = asciiOnly(source);
  assert.match(escaped, /^[\x00-\x7f]*$/);
  assert.deepEqual(eval(escaped), eval(source));
});

test('a bundle runs its modules with their own __filename and __dirname, cycles, JSON, packages, lazy requires and require.main', () => {
  const root = tree({
    [ENTRY_KEY]: [
      '#!/usr/bin/env node',
      '"use strict";',
      'const a = require("./a");',
      'const data = require("../data.json");',
      'const pkg = require("pkg-a");',
      'const os = require("node:os");',
      'exports.report = () => ({ filename: __filename, dirname: __dirname, isMain: require.main === module, fromB: a.fromB, data, pkg: pkg.where,',
      '  lazy: require("./lazy").value, resolved: require.resolve("pkg-a"), eol: os.EOL, arrow: "→", self: this === module.exports });',
      '//# sourceMappingURL=berthd.js.map',
    ].join('\n'),
    'dist/shim/a.js': 'exports.early = "a"; const b = require("./b"); exports.fromB = b.sawA;',
    'dist/shim/b.js': 'exports.sawA = require("./a").early;',
    'dist/shim/lazy.js': 'exports.value = "lazy";',
    'dist/data.json': '{ "n": 1 }',
    'node_modules/pkg-a/package.json': '{ "name": "pkg-a", "main": "lib/index.js" }',
    'node_modules/pkg-a/lib/index.js': 'exports.where = __dirname;',
  });
  const built = writeBundle(root);
  assert.equal(built.modules, 6);
  const record = runBundle(built.path, root);
  assert.equal(record.bundle, 'used');
  const report = (exportsOf(root, ENTRY_KEY).report as () => Record<string, unknown>)();
  assert.deepEqual(report, {
    filename: join(root, ENTRY_KEY),
    dirname: join(root, 'dist', 'shim'),
    isMain: true,
    fromB: 'a',
    data: { n: 1 },
    pkg: join(root, 'node_modules', 'pkg-a', 'lib'),
    lazy: 'lazy',
    resolved: join(root, 'node_modules', 'pkg-a', 'lib', 'index.js'),
    eol: '\n',
    arrow: '→',
    self: true,
  });
});

test('a require of berth\'s own code that does not resolve fails the build, naming the file and line', () => {
  const root = tree({ [ENTRY_KEY]: 'const a = require("./a");\nconst gone = require("./gone");\n', 'dist/shim/a.js': '' });
  assert.throws(() => writeBundle(root), (err: Error) => err instanceof BundleError && /dist\/shim\/berthd\.js:2: require\('\.\/gone'\) does not resolve/.test(err.message));
  assert.deepEqual(readBundle(join(root, 'dist', 'shim', 'berthd.bundle.js'), root), { stale: 'no bundle' });
});

test('a package\'s unresolvable optional require and a package with import() are left to Node', () => {
  const root = tree({
    [ENTRY_KEY]: 'require("opt"); require("esm-ish");',
    'node_modules/opt/index.js': 'try { require("not-installed"); } catch { exports.fallback = true; }',
    'node_modules/esm-ish/index.js': 'exports.load = () => import("./other.mjs"); exports.helper = require("./helper");',
    'node_modules/esm-ish/helper.js': '',
  });
  const graph = buildRequireGraph(root, join(root, ENTRY_KEY));
  assert.deepEqual([...graph.modules.keys()].sort(), [ENTRY_KEY, 'node_modules/opt/index.js']);
  assert.deepEqual(graph.external.get('node_modules/opt/index.js'), ['not-installed']);
  assert.deepEqual(graph.external.get(ENTRY_KEY), ['esm-ish']);
  runBundle(writeBundle(root).path, root);
  assert.equal(exportsOf(root, 'node_modules/opt/index.js').fallback, true);
  assert.equal(typeof exportsOf(root, 'node_modules/esm-ish/index.js').load, 'function', 'Node loaded it from its file');
});

test('a module that throws while loading is not kept: the next require runs it again', () => {
  const root = tree({
    [ENTRY_KEY]: 'let n = 0; exports.attempt = () => { try { return require("./flaky").ok; } catch { return ++n; } };',
    'dist/shim/flaky.js': 'globalThis.flakyRuns = (globalThis.flakyRuns ?? 0) + 1; if (globalThis.flakyRuns < 2) throw new Error("first time"); exports.ok = "ok";',
  });
  runBundle(writeBundle(root).path, root);
  const attempt = exportsOf(root, ENTRY_KEY).attempt as () => unknown;
  assert.equal(attempt(), 1);
  assert.equal(attempt(), 'ok');
});

test('the runner does not use a bundle older than the compiled entry (a tsc-only build)', () => {
  const root = tree({ [ENTRY_KEY]: 'exports.v = 1;' });
  const { path } = writeBundle(root);
  utimesSync(join(root, ENTRY_KEY), new Date(), new Date(Date.now() + 5000));
  assert.match(runBundle(path, root).bundle, /^not used: dist\/shim\/berthd\.js was compiled after the bundle$/);
  assert.match(runBundle(join(root, 'nothing.js'), root).bundle, /^not used: no bundle$/);
});

/** Runs the bundle in a fresh Node.js (V8 would answer a second compile in this one from memory), optionally writing its code cache. */
function runInChild(path: string, root: string, cachePath: string | undefined, write = false, flags: string[] = []): { codeCache?: string; result: unknown } {
  const runner = require.resolve('../../shim/bundle/bundle-runner');
  const cache = require.resolve('../../shim/bundle/code-cache');
  const script = `
    const { runBundle } = require(${JSON.stringify(runner)});
    const { codeCache } = runBundle(${JSON.stringify(path)}, ${JSON.stringify(root)}, { cachePath: ${JSON.stringify(cachePath)} });
    if (${write}) require(${JSON.stringify(cache)}).writeCodeCache();
    const result = require.cache[${JSON.stringify(join(root, ENTRY_KEY))}].exports.twice(21);
    process.stdout.write(JSON.stringify({ codeCache, result }));`;
  const r = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { codeCache?: string; result: unknown };
}

test('a code cache is used when it fits, and one made for another bundle, by other V8 flags or damaged is ignored', () => {
  const root = tree({ [ENTRY_KEY]: 'exports.twice = (n) => n * 2;' });
  const { path } = writeBundle(root);
  const cachePath = join(root, 'cache', 'berthd.code-cache');
  assert.deepEqual(runInChild(path, root, cachePath, true), { codeCache: 'none yet', result: 42 });
  assert.deepEqual(runInChild(path, root, cachePath), { codeCache: 'used', result: 42 });
  assert.deepEqual(runInChild(path, root, cachePath, false, ['--max-semi-space-size=4']), { codeCache: 'rejected by V8', result: 42 });
  const file = readFileSync(cachePath);
  writeFileSync(cachePath, Buffer.concat([file.subarray(0, 65), Buffer.alloc(file.length - 65, 7)]));
  assert.deepEqual(runInChild(path, root, cachePath), { codeCache: 'rejected by V8', result: 42 });
  writeFileSync(cachePath, Buffer.concat([Buffer.from(`${'0'.repeat(64)}\n`), file.subarray(65)]));
  assert.deepEqual(runInChild(path, root, cachePath), { codeCache: 'stale', result: 42 });
  assert.deepEqual(runInChild(path, root, undefined), { codeCache: 'off', result: 42 });
});

test('berthd\'s graph inlines better-sqlite3\'s code and leaves its addon lookup, the registry client and grpc-js to Node', () => {
  const graph = buildRequireGraph(PACKAGE_ROOT, join(PACKAGE_ROOT, ENTRY_KEY));
  const keys = [...graph.modules.keys()];
  assert.ok(keys.includes('node_modules/better-sqlite3/lib/database.js'));
  assert.ok(keys.includes('dist/shim/berthd-serve.js') && keys.includes('dist/shim/cli-commands.js'), 'the daemon and the commands');
  for (const left of ['bindings', 'undici', '@grpc/grpc-js']) {
    assert.ok(!keys.some((key) => key.startsWith(`node_modules/${left}/`)), `${left} is Node's`);
  }
});

test('compactCode drops comments and indentation, keeps every line where it was, and leaves strings, templates and regular expressions alone', () => {
  const source = [
    '"use strict";',
    '// a comment line',
    '/** JSDoc',
    ' * over lines */',
    'function f(a /* inline */, b) {',
    '    const s = "// not a comment /* nor this */";   ',
    '    const t = `line one   ',
    '    // kept inside a template ${a /* in a substitution */ + b}',
    '  last`;',
    '    const r = /\\/\\/ not a comment/.test(s); // trailing',
    '    return [s, t, r, a',
    '        ? b',
    '        : a];',
    '}',
    'module.exports = f(1, 2); /* at the end */',
    '',
  ].join('\n');
  const compact = compactCode(source);
  assert.equal(compact.split('\n').length, source.split('\n').length);
  assert.doesNotMatch(compact.replace(/"[^"]*"|`[^`]*`|\/\\\/\\\/ not a comment\//g, ''), /\/\/|\/\*/);
  assert.ok(compact.length < source.length * 0.75, `${compact.length} of ${source.length}`);
  // Each line's code is on the same line.
  assert.match(compact.split('\n')[4], /^function f\(a ?, b\) \{$/);
  assert.equal(compact.split('\n')[9], 'const r = /\\/\\/ not a comment/.test(s);');
  const run = (code: string): unknown => {
    const module = { exports: undefined as unknown };
    new Function('module', code)(module);
    return module.exports;
  };
  assert.deepEqual(run(compact), run(source));
});
