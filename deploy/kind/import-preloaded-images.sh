#!/usr/bin/env bash
# Copies the images a kindest/node image preloads (control plane, kindnet, storage
# provisioner) from containerd's store into berth's, at node image build time, so a
# berth node starts its control plane without pulling. kind itself imports them into
# containerd and keeps no archives, so they are exported from a containerd started
# here, then imported with `berthd images import --offline`: berthd itself cannot
# start during an image build (no systemd for its cgroup driver, and its root is on
# the build's overlay, which its start-up checks refuse), and the offline import
# uses the same store code with no daemon.
set -euo pipefail
work="$(mktemp -d /var/tmp/berth-preload.XXXXXX)"
containerd_pid=''
cleanup() {
  [ -n "$containerd_pid" ] && kill "$containerd_pid" 2>/dev/null && wait "$containerd_pid" 2>/dev/null
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

for archive in "$work"/image-*.tar; do
  [ -e "$archive" ] || continue
  berthd images import --offline "$archive"
done
echo "import-preloaded-images: ${#images[@]} images imported into berth"
