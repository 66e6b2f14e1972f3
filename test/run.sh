#!/usr/bin/env bash
# The whole test suite: compile, then Node's test runner over every compiled
# test file (unit first, then integration against real runc/conmon/CNI/registry).
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
if [ "$(id -u)" != 0 ]; then
  echo "test: the integration tests need root (namespaces, mounts, cgroups)" >&2
fi
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# A hung test must fail the run well inside CI's 90 minutes, not outlast it.
exec timeout --signal=TERM --kill-after=30 2700 node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec "${files[@]}"
