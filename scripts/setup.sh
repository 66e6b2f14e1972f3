#!/usr/bin/env bash
# Prepares a Debian machine (as root) to run and test berth: Debian packages,
# npm packages, the native addon and the TypeScript build. Idempotent: packages
# already present are not fetched again.
#   setup.sh          everything a development or CI machine needs (with the test packages)
#   setup.sh --node   only what a node needs to build and run berth (used by scripts/install.sh)
#   --skip-packages   build only (the packages are already there)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/debian-packages.sh
source scripts/debian-packages.sh

packages=("${BERTH_RUNTIME_PACKAGES[@]}" "${BERTH_BUILD_PACKAGES[@]}" "${BERTH_TEST_PACKAGES[@]}")
skip_packages=0
for arg in "$@"; do
  case "$arg" in
    --node) packages=("${BERTH_RUNTIME_PACKAGES[@]}" "${BERTH_BUILD_PACKAGES[@]}") ;;
    --skip-packages) skip_packages=1 ;;
    *) echo "usage: setup.sh [--node] [--skip-packages]" >&2; exit 2 ;;
  esac
done
((skip_packages)) || berth_install_debian_packages "${packages[@]}"
berth_require_node
# Debian's docker-registry package starts a registry on :5000 as a service; berth's
# tests start their own, so the packaged one stays off where a service manager runs it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# A node_modules that is a link (a git worktree sharing another tree's) is that tree's: npm ci would empty it.
if [ ! -L node_modules ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  npm ci --no-audit --no-fund
fi
npm run --silent build:native
npm run --silent build
echo "setup: done (berthd: dist/berthd, Node.js with berthd's V8 flags)"
