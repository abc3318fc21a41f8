#!/usr/bin/env bash
# The whole test suite: installs dependencies, then builds twice (plain with
# -Werror, and with AddressSanitizer + UndefinedBehaviorSanitizer) and runs
# every unit and integration test in both.  Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

# sanitizer failures must fail the test, not scroll by
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
# integration tests must not skip for a missing precondition here
export CI=${CI:-true}

passed=0
failed=0
status=0

# formatting is part of the suite (.clang-format)
if clang-format --dry-run --Werror src/*.[ch] include/outboxd/*.h tests/unit/*.[ch] \
     tests/helpers/*.c tests/fuzz/*.c 2>/dev/null; then
  echo "clang-format: clean"; passed=$((passed + 1))
else
  echo "clang-format: run clang-format -i on the files above"; failed=$((failed + 1))
fi
for variant in plain sanitize; do
  dir=build-test-$variant
  opts=(-Dwerror=true)
  [ "$variant" = sanitize ] && opts+=(-Db_sanitize=address,undefined -Db_lundef=false)
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null
  else
    meson setup "$dir" "${opts[@]}" >/dev/null
  fi
  ninja -C "$dir"
  meson test -C "$dir" --print-errorlogs || status=1
  # count from meson's own log, one JSON object per test
  read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    result = json.loads(line)["result"]
    if result == "OK":
        ok += 1
    else:
        bad += 1  # FAIL, TIMEOUT, ERROR, and SKIP: nothing may skip here
print(ok, bad)
PY
  )
  echo "$variant build: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
done

# valgrind memcheck over the unit suites (plain build)
if meson test -C build-test-plain --setup valgrind --suite unit --print-errorlogs; then
  echo "valgrind: clean"; passed=$((passed + 1))
else
  echo "valgrind: errors above"; failed=$((failed + 1)); status=1
fi

# a bounded libFuzzer run over the decoder (the corpus itself is replayed by
# the fuzz-corpus-replay test in both builds above)
if FUZZ_SECONDS=${FUZZ_SECONDS:-30} ./scripts/fuzz.sh; then
  echo "fuzz: no crash"; passed=$((passed + 1))
else
  echo "fuzz: crashed, input in build-fuzz/crashes/"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
