#!/usr/bin/env bash
# Installs what the benchmarks need beyond scripts/setup.sh: Debian's
# containerd (the reference runtime) and gcc (compiles the pause program of
# the sandbox image). CI does not run benchmarks, so this is kept apart.
set -euo pipefail
missing=()
for pkg in containerd gcc libc6-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The package enables a system containerd where a service manager runs; the
# benchmark starts its own with a separate root and socket, so it is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  echo "bench/setup: note: a system containerd is running; the benchmark does not use it"
fi
echo "bench/setup: done ($(containerd --version))"
