// The CNI result cache's listing for GC: the entries of containers it is told to skip are not read when their
// file names show them (a restart's GC skips every live pod: one file each).
import assert from 'node:assert/strict';
import { promises as fsp, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ResultCache, type CachedAttachment } from '../../cni/result-cache';

function entry(containerId: string): CachedAttachment {
  return {
    kind: 'berth-cni-attachment-v1',
    attachment: { containerId, ifName: 'eth0', netnsPath: `/var/run/netns/${containerId}`, args: [], runtimeConfig: {} },
    config: { cniVersion: '0.4.0', name: 'net', plugins: [] } as unknown as CachedAttachment['config'],
    result: null,
  };
}

test('a listing that skips containers reads no file of a skipped hex id, and still reads and returns the others', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cni-cache-'));
  try {
    const cache = new ResultCache(dir);
    const live = 'a'.repeat(64);
    const gone = 'b'.repeat(64);
    // Ids with a dash: the name alone cannot tell them apart, so they are read and their content decides.
    for (const id of [live, gone, 'pod-live', 'pod-gone']) cache.write(entry(id));
    const read: string[] = [];
    const readFile = fsp.readFile;
    fsp.readFile = (async (...args: Parameters<typeof readFile>) => {
      read.push(String(args[0]));
      return readFile(...args);
    }) as typeof readFile;
    let listed: CachedAttachment[];
    try {
      listed = await cache.listAsync(new Set([live, 'pod-live']));
    } finally {
      fsp.readFile = readFile;
    }
    assert.ok(!read.some((path) => path.includes(live)), `the live hex id's file was read: ${read.join(', ')}`);
    assert.deepEqual(listed.map((e) => e.attachment.containerId).sort(), [gone, 'pod-gone', 'pod-live'].sort());
    assert.deepEqual((await cache.listAsync()).map((e) => e.attachment.containerId).sort(), [live, gone, 'pod-gone', 'pod-live'].sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
