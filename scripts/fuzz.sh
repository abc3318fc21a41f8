#!/usr/bin/env bash
# Fuzzes the wal2json decoder (and the router and envelope behind it) with
# libFuzzer under ASan+UBSan for FUZZ_SECONDS (default 60), starting from
# tests/fuzz/corpus.  A crash leaves its input in build-fuzz/crashes/: add it
# to tests/fuzz/corpus once fixed, so every test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if [ ! -d build-fuzz ]; then
  CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C build-fuzz tests/fuzz-wal2json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tests/fuzz/corpus/* "$work/"
mkdir -p build-fuzz/crashes
./build-fuzz/tests/fuzz-wal2json -max_total_time="$seconds" -max_len=4096 \
  -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 "$work" 2>&1 | tail -12
