// berthd's store directories at start: root, state and layers/ that already
// exist too open (0755, another owner) are made root-owned 0711/0700; one that
// cannot be fixed stops berthd with a line that says what to do.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../native';
import { BerthdProcess } from '../support/berthd-process';

const modeOf = (path: string): number => statSync(path).mode & 0o7777;

test('a pre-made 0755 root, state and layers/ owned by another user are made root-owned 0711, 0711 and 0700 at start', async () => {
  const berthd = new BerthdProcess();
  try {
    const layers = join(berthd.root, 'layers');
    for (const dir of [berthd.root, berthd.state, layers]) {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o755);
      chownSync(dir, 1000, 1000);
    }
    await berthd.start();
    assert.equal(modeOf(berthd.root), 0o711);
    assert.equal(modeOf(berthd.state), 0o711);
    assert.equal(modeOf(layers), 0o700);
    for (const dir of [berthd.root, berthd.state, layers]) {
      assert.equal(statSync(dir).uid, 0, `${dir} is root's`);
      assert.equal(statSync(dir).gid, 0, `${dir} is root's group`);
    }
    assert.match(berthd.logs(), /store: .*root.* was too open; fixed: owner 1000:1000 -> 0:0, mode 0755 -> 0711/);
  } finally {
    await berthd.cleanup();
  }
});

test('a root that cannot be made private (read-only mount) stops berthd with a line naming it and the fix', async () => {
  const berthd = new BerthdProcess();
  const native = loadNative();
  const f = native.mountFlags;
  chmodSync(berthd.root, 0o755);
  native.mount(berthd.root, berthd.root, null, f.MS_BIND);
  try {
    native.mount(null, berthd.root, null, f.MS_REMOUNT | f.MS_BIND | f.MS_RDONLY);
    await assert.rejects(berthd.start(), /berthd exited early/);
    assert.match(berthd.logs(), /berthd cannot start: store: .*root.* is mode 0755 .* cannot be made 0:0 0711 .*chmod 0711/);
    assert.equal(modeOf(berthd.root), 0o755);
  } finally {
    native.umount2(berthd.root, f.MNT_DETACH);
    await berthd.cleanup();
  }
});
