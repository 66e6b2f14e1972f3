import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commitFromGit } from '../../shim/build-info';
import { BERTHD_ENTRY, REPO_ROOT } from '../support/berthd-process';

test('the commit is read from the git directory when no build record says it (worktrees too)', () => {
  const head = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  assert.equal(commitFromGit(REPO_ROOT), head);
});

test('berthd version --json names berth\'s version and commit, Node\'s version and the binaries found', () => {
  const out = spawnSync(process.execPath, [BERTHD_ENTRY, 'version', '--json', '--config', join(REPO_ROOT, 'no-such-berth.toml')], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const report = JSON.parse(out.stdout) as { berth: { version: string; commit: string }; node: string; binaries: { name: string; path?: string; version?: string }[] };
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(report.berth.version, pkg.version);
  assert.match(report.berth.commit, /^[0-9a-f]{40}(-dirty)?$/);
  assert.equal(report.node, process.version);
  assert.deepEqual(report.binaries.map((b) => b.name), ['conmon', 'runc', 'crun']);
  for (const b of report.binaries) if (b.path) assert.match(b.version ?? '', /^\d+\.\d+/);
  assert.match(out.stderr, /cannot read .*no-such-berth\.toml.*showing the default binaries/);
});
