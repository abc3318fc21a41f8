#!/usr/bin/env bash
# Fuzzes each plugin's decoder (and the router and envelope behind it) and
# the timeline history reader with libFuzzer under ASan+UBSan for
# FUZZ_SECONDS (default 60, split between the targets), each starting from
# its corpus under tests/fuzz.  A crash leaves its input in
# build-fuzz/crashes/: add it to the target's corpus once fixed, so every
# test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if [ ! -d build-fuzz ]; then
  CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
targets=(wal2json pgoutput timeline)
ninja -C build-fuzz "${targets[@]/#/tests/fuzz-}"
mkdir -p build-fuzz/crashes
for target in "${targets[@]}"; do
  corpus=tests/fuzz/corpus
  [ "$target" = wal2json ] || corpus=tests/fuzz/corpus-$target
  work=$(mktemp -d)
  cp "$corpus"/* "$work/"
  share=$((seconds / ${#targets[@]}))
  echo "fuzz-$target: $share s"
  ./build-fuzz/tests/fuzz-$target -max_total_time="$share" -max_len=16384 \
    -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 "$work" 2>&1 | tail -12
  rm -rf "$work"
done
