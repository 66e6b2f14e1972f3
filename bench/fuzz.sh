#!/usr/bin/env bash
# A long fuzz of berthd's CRI server: the bounded fuzz test
# (test/integration/cri-fuzz.test.ts) with a seed, a call count and a time
# limit of your choosing. It stops by itself; a failure prints the seed, and
# the same seed and count replay the same requests.
#   bash bench/fuzz.sh [seed] [count] [seconds]     (root; real runc, CNI, registry)
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-$(( (RANDOM << 15) | RANDOM ))}
count=${2:-5000}
seconds=${3:-1800}
npm run --silent build
echo "fuzz: seed $seed, at most $count calls or $seconds s"
status=0
BERTH_FUZZ_SEED=$seed BERTH_FUZZ_COUNT=$count BERTH_FUZZ_SECONDS=$seconds \
  timeout --signal=TERM --kill-after=30 $(( seconds + 600 )) \
  node --test --test-concurrency=1 --test-timeout=$(( (seconds + 300) * 1000 )) --test-reporter=spec dist/test/integration/cri-fuzz.test.js || status=$?
[ "$status" = 0 ] || echo "fuzz: FAILED with seed $seed (replay: bash bench/fuzz.sh $seed $count $seconds)" >&2
exit "$status"
