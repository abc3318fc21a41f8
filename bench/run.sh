#!/usr/bin/env bash
# The benchmark, one command: installs dependencies, builds a release
# outboxd in build-bench/, and runs bench/bench.py (see its settings).
#   ./bench/run.sh                          # about 6 minutes on 2 cores
#   SOAK_SECONDS=600 ./bench/run.sh         # plus a 10-minute soak
#   BENCH_EVENTS=100000 LIVE_SECONDS=10 ./bench/run.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -d build-bench ] || meson setup build-bench --buildtype=release >/dev/null
ninja -C build-bench
exec /usr/bin/python3 bench/bench.py
