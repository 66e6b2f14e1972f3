// Writes berthd's bundle (dist/shim/berthd.bundle.js) after tsc: every
// module of berthd's require() graph (require-graph.ts) in one file, each in
// a function of Node's module wrapper's shape, keyed by its path from the
// package root, with the specifiers it requires mapped to those keys. The
// runner (bundle-runner.ts, what the launcher starts) compiles that one file
// and gives each module its original __filename and __dirname. Why: a
// restart was mostly Node finding, reading and compiling ~280 files one by
// one (bench/README.md, "Start time").
//   node dist/shim/bundle/bundle-build.js [ROOT]    (`npm run build` runs it; ROOT default this build's)
import { createHash } from 'node:crypto';
import { renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BUNDLE_PATH, ENTRY_KEY, manifestLine, PACKAGE_ROOT } from './bundle-file';
import * as ts from 'typescript';
import { BundleError, buildRequireGraph, type GraphModule } from './require-graph';

export interface BuiltBundle {
  path: string;
  modules: number;
  bytes: number;
  /** Specifiers left to Node's require, by requiring module. */
  external: Map<string, string[]>;
}

/**
 * Code with every character beyond ASCII written as a \\u escape, which means the same in a string, a
 * template's value, a regular expression, an identifier and a comment: an ASCII file is read without UTF-8
 * decoding and kept by V8 as one byte per character (a single non-ASCII character makes it two).
 */
export function asciiOnly(code: string): string {
  return code.replace(/(\\*)([^\x00-\x7f])/gu, (_match, slashes: string, char: string) => {
    const units = char.length === 2 ? [char.charCodeAt(0), char.charCodeAt(1)] : [char.charCodeAt(0)];
    const escaped = units.map((unit) => `\\u${unit.toString(16).padStart(4, '0')}`).join('');
    // `\→` (an escaped character) is the character itself: the escape replaces that backslash.
    return (slashes.length % 2 === 1 ? slashes.slice(1) : slashes) + escaped;
  });
}

/**
 * Code without its comments and the indentation and trailing blanks of its lines: what lies between two tokens
 * is kept only as its line breaks (or one space when it had a comment and no line break). V8 keeps a script's
 * whole text in memory for the process's life (to compile functions lazily, for stack traces and toString):
 * berth's comments and indentation were a third of the bundle. Every line stays where it was, so a stack trace's
 * line in the bundle is the module's line in its compiled file (dist/.../x.js, whose source map leads to the
 * TypeScript); its column is less the line's indentation. Strings, templates and regular expressions are tokens,
 * left as they are.
 */
export function compactCode(code: string): string {
  const file = ts.createSourceFile('module.js', code, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const parts: string[] = [];
  let at = 0;
  const token = (pos: number, start: number): void => {
    if (pos < at || start <= pos) return;
    // Between two tokens there are only blanks, line breaks and comments.
    const between = code.slice(pos, start);
    const breaks = between.split('\n').length - 1;
    if (breaks === 0 && !/\S/.test(between)) return;
    parts.push(code.slice(at, pos), breaks > 0 ? '\n'.repeat(breaks) : ' ');
    at = start;
  };
  const visit = (node: ts.Node): void => {
    for (const child of node.getChildren(file)) {
      // JSDoc comments are nodes in a JavaScript file's tree; their text is the next token's leading trivia.
      if (child.kind >= ts.SyntaxKind.FirstJSDocNode && child.kind <= ts.SyntaxKind.LastJSDocNode) continue;
      if (child.kind < ts.SyntaxKind.FirstNode || child.kind === ts.SyntaxKind.EndOfFileToken) token(child.pos, child.getStart(file));
      else visit(child);
    }
  };
  visit(file);
  parts.push(code.slice(at));
  return parts.join('');
}

/** A module's code as a wrapper function's body: no hashbang (only valid at a script's start), no source map comment. */
function wrapperBody(module: GraphModule): string {
  if (module.kind === 'json') {
    JSON.parse(module.source); // a broken JSON file fails the build, not berthd's start
    return `module.exports = JSON.parse(${asciiOnly(JSON.stringify(module.source))});`;
  }
  return asciiOnly(compactCode(module.source.replace(/^#!.*/, '').replace(/\n\/\/# sourceMappingURL=[^\n]*\s*$/, '\n')));
}

/** The bundle's text after its manifest line: one expression, the module table the runner runs. */
export function bundleBody(entry: string, modules: Iterable<GraphModule>): string {
  const parts = [`({ entry: ${JSON.stringify(entry)}, modules: {\n`];
  for (const module of modules) {
    parts.push(
      `${JSON.stringify(module.key)}: [function (exports, require, module, __filename, __dirname) {\n`,
      wrapperBody(module),
      `\n}, ${JSON.stringify(module.deps)}],\n`,
    );
  }
  parts.push('} })\n');
  return parts.join('');
}

/** Builds the bundle of root's compiled berthd and writes it atomically. */
export function writeBundle(root: string = PACKAGE_ROOT): BuiltBundle {
  root = resolve(root);
  const out = root === PACKAGE_ROOT ? BUNDLE_PATH : join(root, 'dist', 'shim', 'berthd.bundle.js');
  const entryPath = join(root, ENTRY_KEY);
  const entry = statSync(entryPath);
  const graph = buildRequireGraph(root, entryPath);
  if (graph.entry !== ENTRY_KEY) throw new BundleError(`the entry resolved to ${graph.entry}, not ${ENTRY_KEY}`);
  const body = bundleBody(graph.entry, graph.modules.values());
  const sha256 = createHash('sha256').update(body).digest('hex');
  const text = manifestLine({ entry: graph.entry, entrySize: entry.size, entryMtimeMs: entry.mtimeMs, sha256, modules: graph.modules.size }) + body;
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, out);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // not written
    }
    throw err;
  }
  return { path: out, modules: graph.modules.size, bytes: Buffer.byteLength(text), external: graph.external };
}

if (require.main === module) {
  try {
    const built = writeBundle(process.argv[2] ?? PACKAGE_ROOT);
    process.stdout.write(`bundle: ${built.path}: ${built.modules} modules, ${Math.round(built.bytes / 1024)} KiB\n`);
  } catch (err) {
    process.stderr.write(`bundle: ${err instanceof BundleError ? err.message : (err as Error).stack}\n`);
    process.exit(1);
  }
}
