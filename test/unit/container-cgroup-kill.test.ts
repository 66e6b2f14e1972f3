// Which cgroup berth itself SIGKILLs for a container in a shared PID namespace:
// only the container's own (its id, or berth-<id>.scope), never a parent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownCgroupProcsFiles } from '../../runtime/container/cgroup-kill';

const ID = 'a'.repeat(64);

test('a container\'s own cgroupfs cgroup and systemd scope are accepted as its own', () => {
  const files = [`/sys/fs/cgroup/pids/berth/pod-1/${ID}/cgroup.procs`, `/sys/fs/cgroup/unified/kubepods.slice/berth-${ID}.scope/cgroup.procs`];
  assert.deepEqual(ownCgroupProcsFiles(files, ID), files);
});

test('a parent, a sibling or another file is never taken for the container\'s cgroup', () => {
  for (const stranger of [
    '/sys/fs/cgroup/pids/berth/pod-1/cgroup.procs',
    `/sys/fs/cgroup/pids/berth/pod-1/${'b'.repeat(64)}/cgroup.procs`,
    `/sys/fs/cgroup/unified/kubepods.slice/cri-containerd-${ID}.scope/cgroup.procs`,
    `/sys/fs/cgroup/pids/berth/pod-1/${ID}/tasks`,
  ]) {
    assert.throws(() => ownCgroupProcsFiles([`/sys/fs/cgroup/pids/berth/pod-1/${ID}/cgroup.procs`, stranger], ID), /not container .* own cgroup/, stranger);
  }
});
