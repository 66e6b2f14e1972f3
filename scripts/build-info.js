#!/usr/bin/env node
// Records what was built into dist/shim/build-info.json (beside berthd.js, so an
// install that copies dist/shim carries it): berth's version and the git
// commit (with "-dirty" when the tree had changes), read by `berthd version`.
// Run by `npm run build` after tsc; without git the commit is "unknown".
'use strict';
const { execFileSync } = require('node:child_process');
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const repo = join(__dirname, '..');
const git = (...args) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
let commit = 'unknown';
try {
  commit = git('rev-parse', 'HEAD');
  if (git('status', '--porcelain', '--untracked-files=no') !== '') commit += '-dirty';
} catch {
  // not a git checkout (a tarball install): keep "unknown"
}
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
mkdirSync(join(repo, 'dist', 'shim'), { recursive: true });
writeFileSync(join(repo, 'dist', 'shim', 'build-info.json'), `${JSON.stringify({ version, commit, builtAt: new Date().toISOString() }, null, 2)}\n`);
