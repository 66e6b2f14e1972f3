// The layers directory (runtime/image/layer-directories.ts) on this host's
// filesystem: init marks it to spread its subdirectories over block groups
// (chattr +T, run without forking berthd), where the filesystem takes the flag.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { LayerDirectories } from '../../runtime/image/layer-directories';

const scratch = mkdtempSync('/tmp/berth-layer-dirs-test-');
after(() => rmSync(scratch, { recursive: true, force: true }));

function hasTopDirFlag(dir: string): boolean {
  const out = spawnSync('lsattr', ['-d', dir], { encoding: 'utf8' });
  return out.status === 0 && /^\S*T\S*\s/.test(out.stdout);
}

test('init marks the layers directory with the top-directory flag (chattr +T) where the filesystem takes it', async (t) => {
  const probe = join(scratch, 'probe');
  mkdirSync(probe);
  if (spawnSync('chattr', ['+T', probe]).status !== 0 || !hasTopDirFlag(probe)) {
    t.skip('chattr +T is not available or refused on this filesystem');
    return;
  }
  const layers = new LayerDirectories(join(scratch, 'root'));
  layers.init();
  // init does not wait for chattr: wait for its effect.
  for (let i = 0; i < 200 && !hasTopDirFlag(layers.dir); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(hasTopDirFlag(layers.dir), `${layers.dir} carries the T flag`);
});
