// Writable-layer usage on real directories and real mounts this test makes: an
// overlay mounted like a container's rootfs, a bind mount of the same
// filesystem and a tmpfs, all inside the tree the meter measures.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupHierarchy } from '../../runtime/cgroups/cgroup-hierarchy';
import type { ContainerView } from '../../runtime/container/container-types';
import { StatsCollector } from '../../runtime/stats/stats-collector';
import { WritableLayerMeter, measureDirectory } from '../../runtime/stats/writable-layer';

const MiB = 1024 * 1024;
const mounted: string[] = [];
const dirs: string[] = [];

function mount(args: string[], target: string): void {
  execFileSync('mount', [...args, target]);
  mounted.push(target);
}

after(() => {
  for (const target of mounted.reverse()) {
    try {
      execFileSync('umount', ['-l', target]);
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  // Under /var/tmp, on the same disk filesystem as a container's layers (not a tmpfs /tmp).
  const dir = mkdtempSync(join('/var/tmp', prefix));
  dirs.push(dir);
  return dir;
}

test('the writable-layer meter never walks into a mounted rootfs, a bind mount of the same filesystem or a tmpfs', async () => {
  // A container directory as berth lays it out, measured whole: upper/ and work/ are the
  // container's; rootfs/ is the overlay mounted over the image layer and upper/.
  const base = tempDir('berth-layer-mounts-');
  const container = join(base, 'container');
  const lower = join(base, 'lower');
  const elsewhere = join(base, 'elsewhere');
  for (const d of [lower, elsewhere, join(container, 'upper'), join(container, 'work'), join(container, 'rootfs'), join(container, 'upper', 'bound'), join(container, 'upper', 'scratch')]) {
    mkdirSync(d, { recursive: true });
  }
  writeFileSync(join(container, 'upper', 'written'), Buffer.alloc(64 * 1024, 1));
  for (let i = 0; i < 50; i++) writeFileSync(join(lower, `image-file-${i}`), Buffer.alloc(64 * 1024, 2));
  for (let i = 0; i < 20; i++) writeFileSync(join(elsewhere, `other-${i}`), Buffer.alloc(64 * 1024, 3));
  mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(container, 'upper')},workdir=${join(container, 'work')}`], join(container, 'rootfs'));
  mount(['--bind', elsewhere], join(container, 'upper', 'bound'));
  mount(['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs'], join(container, 'upper', 'scratch'));
  writeFileSync(join(container, 'upper', 'scratch', 'in-tmpfs'), Buffer.alloc(2 * MiB, 4));

  const meter = new WritableLayerMeter({ upperDirs: () => [container], refreshMs: 0 });
  await meter.refresh();
  const usage = meter.usage(container)!;
  assert.ok(usage, 'measured');
  assert.equal(usage.complete, true);
  // container, upper, work, work's own "work" dir the overlay made, written: the mount points
  // (rootfs, bound, scratch) and everything below them are not the container's writable layer.
  assert.ok(usage.inodesUsed <= 6, `inodes ${usage.inodesUsed}: walked into a mount`);
  assert.ok(usage.usedBytes >= 64 * 1024 && usage.usedBytes < 1 * MiB, `bytes ${usage.usedBytes}: walked into a mount`);
  // The walk stayed out of the bind mount only because it knows the mount points: same device.
  const unguarded = (await measureDirectory(join(container, 'upper')))!;
  assert.ok(unguarded.inodesUsed > 20, 'a bind mount of the same filesystem is invisible to a device check alone');
});

test('a stats call answers the latest background measurement with its time; it never walks the layer itself', async () => {
  const upper = tempDir('berth-layer-background-');
  writeFileSync(join(upper, 'first'), Buffer.alloc(64 * 1024, 1));
  const collector = new StatsCollector({ cgroups: {} as CgroupHierarchy, layerMountpoint: '/var/lib/berth', upperDirs: () => [upper], layerRefreshMs: 3_600_000 });
  const container = { id: 'c1', podSandboxId: 'p1', cgroupPath: '', upperDir: upper, pid: 0 } as unknown as ContainerView;

  assert.equal((await collector.containerUsage(container)).writableLayer, undefined, 'nothing before the meter ran');
  await collector.layers.refresh();
  const measured = (await collector.containerUsage(container)).writableLayer!;
  assert.ok(measured.usedBytes >= 64 * 1024);
  assert.equal(measured.mountpoint, '/var/lib/berth');
  assert.ok(measured.timestampNs > 0n);

  writeFileSync(join(upper, 'second'), Buffer.alloc(1 * MiB, 2));
  const again = (await collector.containerUsage(container)).writableLayer!;
  assert.equal(again.usedBytes, measured.usedBytes, 'the call did not walk');
  assert.equal(again.timestampNs, measured.timestampNs, 'the time is the measurement\'s, not the call\'s');
  // Not due yet: the meter's rate holds even when asked again at once.
  await collector.layers.refresh();
  assert.equal((await collector.containerUsage(container)).writableLayer!.usedBytes, measured.usedBytes);
});

test('the meter measures layers that are due, forgets removed containers, and keeps running in the background', async () => {
  const a = tempDir('berth-layer-a-');
  const b = tempDir('berth-layer-b-');
  writeFileSync(join(a, 'data'), Buffer.alloc(128 * 1024, 1));
  let listed = [a, b];
  const meter = new WritableLayerMeter({ upperDirs: () => listed, refreshMs: 0, tickMs: 20 });
  meter.start();
  try {
    for (let i = 0; i < 250 && !(meter.usage(a) && meter.usage(b)); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(meter.usage(a) && meter.usage(b), 'both measured by the running meter');
    assert.equal(meter.total().usedBytes, meter.usage(a)!.usedBytes + meter.usage(b)!.usedBytes);
    listed = [a];
    for (let i = 0; i < 250 && meter.usage(b); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(meter.usage(b), undefined, 'a container no longer listed is forgotten');
  } finally {
    await meter.stop();
  }
});

test('the meter started with a first walk later (berthd: after its start) walks nothing before then', async () => {
  const a = tempDir('berth-layer-later-');
  writeFileSync(join(a, 'data'), Buffer.alloc(64 * 1024, 1));
  const meter = new WritableLayerMeter({ upperDirs: () => [a], refreshMs: 0, tickMs: 10 });
  meter.start(60_000);
  try {
    // Started at once, a meter this fast measures within a few ticks (previous test).
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(meter.usage(a), undefined);
  } finally {
    await meter.stop();
  }
});
