#!/usr/bin/env bash
# Benchmarks berthd against containerd on this machine, side by side in one
# run, and prints the ratios (berth / containerd). Needs root.
#
#   bash bench/run.sh [pod-lifecycle] [container-lifecycle] [image-pull] [density]
#
# Environment:
#   BENCH_ONLY=containerd|berth    run one runtime only (proves the harness)
#   BENCH_WARMUP (3)               untimed iterations first (pods/containers)
#   BENCH_POD_ITERATIONS (30)      BENCH_CONTAINER_ITERATIONS (30)
#   BENCH_PULL_ITERATIONS (5)      BENCH_PULL_WARMUP (1)
#   BENCH_PULL_LAYERS_MIB (32,24,20,14,8,6)   data layers of the pull image
#   BENCH_STOP_TIMEOUT (0)         StopContainer timeout, seconds
#   BENCH_DENSITY_PODS (110)       BENCH_DENSITY_SECONDS (60)   BENCH_DENSITY_PARALLEL (8)
#   BENCH_DENSITY_FIRST (berth)    which runtime the density scenario loads first
#   BENCH_DENSITY_SETTLE_MS (5000) pause before memory is read and between runtimes
#   BENCH_DENSITY_IDLE_AFTER_PULL_MS (20000) idle PSS read at least this long after the pulls
#   BENCH_QUIET_MAX_S (120)        before each measured phase, wait up to this long for the CPUs to be <15% busy (0: do not wait)
#   BENCH_SKIP_BUILD=1             use the existing dist/
# Results: bench/results/<run id>/<scenario>.json (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench: needs root (namespaces, mounts, cgroups)" >&2
  exit 1
fi
command -v containerd >/dev/null || { echo "bench: containerd missing; run bash bench/setup.sh" >&2; exit 1; }

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  # Other parts of the tree may not type-check at every moment; tsc still emits.
  npx tsc -p . >/tmp/berth-bench-tsc.log 2>&1 || echo "bench: tsc reported errors (see /tmp/berth-bench-tsc.log); running what was emitted"
  # What the build makes beside the compiled code: the parsed CRI proto berthd loads, the launcher with its V8 flags.
  npm run --silent build:outputs
fi

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then scenarios=(pod-lifecycle container-lifecycle image-pull density); fi
export BENCH_RUN_ID="${BENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}"

failed=0
for s in "${scenarios[@]}"; do
  echo "bench: $s"
  if ! node "dist/bench/$s.js"; then
    echo "bench: $s failed" >&2
    failed=1
  fi
done
node dist/bench/summary.js "bench/results/$BENCH_RUN_ID" || true
exit $failed
