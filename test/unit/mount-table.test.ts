// Which mount points lie in a directory of berth's, read from mountinfo text:
// the guard of recursive removals and of the writable-layer meter's walks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mountPointsWithin } from '../../runtime/common/mount-table';

const MOUNTINFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '90 22 0:50 / /var/lib/berth/containers/abc/rootfs rw shared:40 - overlay overlay rw,upperdir=/var/lib/berth/containers/abc/upper',
  '91 22 8:1 /srv/data /var/lib/berth/containers/abc/upper/mnt rw shared:1 - ext4 /dev/sda1 rw',
  // A sibling whose name starts with the directory's: not inside it.
  '92 22 8:1 /srv /var/lib/berth/containers/abc/upper2 rw shared:1 - ext4 /dev/sda1 rw',
  // The directory named as the mount's root inside its filesystem (field 4), mounted elsewhere.
  '93 22 8:1 /var/lib/berth/containers/abc/upper /mnt/elsewhere rw shared:1 - ext4 /dev/sda1 rw',
  // mountinfo escapes a space as \040; the last line has no newline.
  '94 22 8:1 /srv /var/lib/berth/containers/a\\040b/upper/x\\040y rw shared:1 - ext4 /dev/sda1 rw',
].join('\n');

test('mountPointsWithin lists the mount points at or below each directory, and no sibling or mount root', () => {
  assert.deepEqual([...mountPointsWithin(MOUNTINFO, ['/var/lib/berth/containers/abc/upper'])], ['/var/lib/berth/containers/abc/upper/mnt']);
  assert.deepEqual([...mountPointsWithin(MOUNTINFO, ['/var/lib/berth/containers/abc/rootfs/'])], ['/var/lib/berth/containers/abc/rootfs']);
  assert.deepEqual(
    [...mountPointsWithin(MOUNTINFO, ['/var/lib/berth/containers'])].sort(),
    [
      '/var/lib/berth/containers/a b/upper/x y',
      '/var/lib/berth/containers/abc/rootfs',
      '/var/lib/berth/containers/abc/upper/mnt',
      '/var/lib/berth/containers/abc/upper2',
    ],
  );
  assert.deepEqual([...mountPointsWithin(MOUNTINFO, ['/var/lib/berth/containers/a b'])], ['/var/lib/berth/containers/a b/upper/x y']);
  assert.deepEqual([...mountPointsWithin(MOUNTINFO, ['/var/lib/berth/images', '/tmp'])], []);
});
