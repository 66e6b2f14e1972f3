// The bundle's file: where it is, its first line (the manifest), and whether
// it was built from the compiled code beside it. Shared by the build
// (bundle-build.ts), the runner (bundle-runner.ts, berthd's entry) and the
// tests; depends on nothing but node:fs and node:path, since the runner
// loads it before the bundle.
//
// A bundle is current when the entry it was built from has the same size and
// modification time as the entry beside it: tsc rewrites every output at each
// compile, so a compile after the bundle makes it stale (the runner then runs
// the compiled modules themselves), and `cp -a` (scripts/install.sh) keeps both.
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const MANIFEST_PREFIX = '// berthd-bundle ';

/** What the bundle's first line records. */
export interface BundleManifest {
  /** The entry's key (path from the package root, with /). */
  entry: string;
  entrySize: number;
  entryMtimeMs: number;
  /** sha256 of the bundle's text after this line: the code cache is keyed by it. */
  sha256: string;
  modules: number;
}

/** The package root of this build: the directory holding dist/ and node_modules/. */
export const PACKAGE_ROOT = resolve(__dirname, '..', '..', '..');
/** berthd's compiled entry, which the bundle starts from. */
export const ENTRY_KEY = 'dist/shim/berthd.js';
/** The bundle: beside the compiled shim, so an installation that copies dist/shim has it. */
export const BUNDLE_PATH = join(PACKAGE_ROOT, 'dist', 'shim', 'berthd.bundle.js');
/** Node's startup snapshot of the builtins berthd loads (snapshot-build.ts), beside the bundle for the same reason. */
export const SNAPSHOT_PATH = join(PACKAGE_ROOT, 'dist', 'shim', 'berthd.snapshot');

export function manifestLine(manifest: BundleManifest): string {
  return `${MANIFEST_PREFIX}${JSON.stringify(manifest)}\n`;
}

/** The manifest of a bundle's text, or undefined when the text is not a bundle. */
export function parseManifest(text: string): BundleManifest | undefined {
  if (!text.startsWith(MANIFEST_PREFIX)) return undefined;
  const end = text.indexOf('\n');
  try {
    const manifest = JSON.parse(text.slice(MANIFEST_PREFIX.length, end)) as BundleManifest;
    return typeof manifest.entry === 'string' && typeof manifest.sha256 === 'string' ? manifest : undefined;
  } catch {
    return undefined;
  }
}

/** Why the bundle cannot be used for the compiled entry under root, or undefined when it can. */
export function staleReason(manifest: BundleManifest | undefined, root: string): string | undefined {
  if (!manifest) return 'not a bundle';
  let entry;
  try {
    entry = statSync(join(root, manifest.entry));
  } catch {
    return `${manifest.entry} is missing`;
  }
  if (entry.size !== manifest.entrySize || entry.mtimeMs !== manifest.entryMtimeMs) return `${manifest.entry} was compiled after the bundle`;
  return undefined;
}

/** The bundle's text and manifest, or why it cannot be used. */
export function readBundle(path: string, root: string): { text: string; manifest: BundleManifest } | { stale: string } {
  let text;
  try {
    // ASCII by construction (bundle-build.ts asciiOnly): read without UTF-8 decoding.
    text = readFileSync(path, 'latin1');
  } catch {
    return { stale: 'no bundle' };
  }
  const manifest = parseManifest(text);
  const stale = staleReason(manifest, root);
  return stale || !manifest ? { stale: stale ?? 'not a bundle' } : { text, manifest };
}
