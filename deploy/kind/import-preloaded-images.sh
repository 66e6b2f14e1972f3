#!/usr/bin/env bash
# Copies the images a kindest/node image preloads (control plane, kindnet, storage
# provisioner) from containerd's store into berth's, at node image build time, so a
# berth node starts its control plane without pulling. kind itself imports them into
# containerd and keeps no archives, so they are exported from a containerd started
# here, then imported through a berthd started here.
#
set -euo pipefail
work="$(mktemp -d /var/tmp/berth-preload.XXXXXX)"
containerd_pid='' berthd_pid=''
cleanup() {
  [ -n "$containerd_pid" ] && kill "$containerd_pid" 2>/dev/null && wait "$containerd_pid" 2>/dev/null
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

wait_for_socket() {
  local socket="$1" what="$2" i
  for i in $(seq 1 100); do
    [ -S "$socket" ] && return 0
    sleep 0.2
  done
  echo "import-preloaded-images: $what did not create $socket" >&2
  return 1
}

containerd >"$work/containerd.log" 2>&1 &
containerd_pid=$!
wait_for_socket /run/containerd/containerd.sock containerd
arch="$(dpkg --print-architecture)"
mapfile -t images < <(ctr --namespace=k8s.io images list --quiet | grep -v '^sha256:')
n=0
for image in "${images[@]}"; do
  n=$((n + 1))
  echo "import-preloaded-images: exporting $image"
  # One platform: the node's. kind imported them with --all-platforms but only this one's layers.
  ctr --namespace=k8s.io images export --platform "linux/$arch" "$work/image-$n.tar" "$image"
done
kill "$containerd_pid"
wait "$containerd_pid" 2>/dev/null || true
containerd_pid=''

# No systemd runs during an image build: this daemon only imports, so it uses cgroupfs.
berthd --set cgroup.driver=cgroupfs >"$work/berthd.log" 2>&1 &
berthd_pid=$!
# The admin socket is the last thing berthd opens before it is up.
wait_for_socket /run/berth/admin/berth-admin.sock berthd || { cat "$work/berthd.log" >&2; exit 1; }
for archive in "$work"/image-*.tar; do
  [ -e "$archive" ] || continue
  berthd images import "$archive"
done
kill "$berthd_pid"
wait "$berthd_pid" 2>/dev/null || true
berthd_pid=''
# Volatile state of this build-time daemon must not end up in the image.
rm -rf /run/berth /var/run/berth
echo "import-preloaded-images: ${#images[@]} images imported into berth"
