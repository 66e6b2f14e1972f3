#!/usr/bin/env bash
# Turns a kindest/node image into a berth node; run by deploy/kind/Dockerfile at
# image build time (no systemd running, the preloaded images in containerd's store).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"

# The same installer as a plain host: Debian packages (and Node.js), build, files, unit, enabled.
bash "$src/scripts/install.sh" --cgroup-driver systemd

# The node's configuration is berth's, not containerd's: these replace kind's files.
install -D -m 0644 "$here/berth.toml" /etc/berth/berth.toml
install -D -m 0644 "$here/crictl.yaml" /etc/crictl.yaml
# kind's /etc/default/kubelet names containerd's unit as the runtime's cgroup.
echo 'KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/berthd.service' >/etc/default/kubelet

# The control-plane, kindnet and storage images kind preloaded, into berth's store.
bash "$here/import-preloaded-images.sh"

systemctl disable containerd.service
systemctl enable berthd.service

# Keep the image small: the build tree is not needed at run time.
rm -rf "$src" /root/.npm /root/.cache/node-gyp
