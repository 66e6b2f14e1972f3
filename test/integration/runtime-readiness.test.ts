// Status tells the truth about RuntimeReady: a berthd whose conmon is missing
// says so (reason and message), and says ready again once conmon is back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { findBinarySync } from '../../runtime/host/binaries';
import { BerthdProcess } from '../support/berthd-process';

describe('RuntimeReady follows conmon', () => {
  let berthd: BerthdProcess;
  let binDir: string;
  let conmonPath: string;

  before(async () => {
    binDir = mkdtempSync('/tmp/berth-test-bin-');
    conmonPath = join(binDir, 'conmon');
    berthd = new BerthdProcess({ extraToml: `[oci]\nconmon = ${JSON.stringify(conmonPath)}\n` });
    await berthd.start();
  });
  after(async () => {
    await berthd?.cleanup();
    rmSync(binDir, { recursive: true, force: true });
  });

  async function runtimeReady(): Promise<{ status: boolean; reason: string; message: string }> {
    const s = await berthd.client.call('Status', { verbose: false });
    const c = (s.status?.conditions ?? []).find((x) => x.type === 'RuntimeReady');
    assert.ok(c, 'RuntimeReady condition present');
    return c;
  }

  test('RuntimeReady is false with a reason and a message naming conmon while it is missing', async () => {
    const c = await runtimeReady();
    assert.equal(c.status, false);
    assert.equal(c.reason, 'ConmonMissing');
    assert.match(c.message, /conmon not found/);
    assert.ok(c.message.includes(conmonPath));
  });

  test('Status verbose says what was checked', async () => {
    const s = await berthd.client.call('Status', { verbose: true });
    const readiness = JSON.parse(s.info.runtimeReadiness) as { handler: string; checked: { name: string; found: boolean }[] };
    assert.equal(readiness.handler, 'runc');
    assert.deepEqual(readiness.checked.map((c) => [c.name, c.found]), [['OCI runtime of handler "runc"', true], ['conmon', false]]);
    assert.ok(JSON.parse(s.info.networkReadiness).confDir);
  });

  test('RuntimeReady becomes true once conmon is back', async () => {
    const real = findBinarySync('conmon');
    assert.ok(real, 'conmon is installed on this host');
    symlinkSync(real, conmonPath);
    const deadline = Date.now() + 30_000;
    let c = await runtimeReady();
    while (!c.status && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      c = await runtimeReady();
    }
    assert.equal(c.status, true, `still not ready: ${c.reason} ${c.message}`);
    assert.equal(c.reason, '');
  });
});
