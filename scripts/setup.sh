#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) to run and test berth: Debian packages,
# npm packages, the native addon and the TypeScript build. Idempotent: packages
# already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  runc crun conmon containernetworking-plugins iptables iproute2 util-linux
  busybox-static docker-registry apache2-utils zstd
  build-essential python3 ca-certificates
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's docker-registry package starts a registry on :5000 as a service; berth's
# tests start their own, so the packaged one stays off where a service manager runs it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build:native
npm run --silent build
echo "setup: done (berthd: node dist/shim/berthd.js)"
