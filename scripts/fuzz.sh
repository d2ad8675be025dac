#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz/ and runs each for
# SECONDS (default 300) from the seed corpus in fuzz/corpus/. A crash, a hang or a
# sanitizer report fails the run and leaves the input in build-fuzz/ to reproduce:
#   build-fuzz/fuzz/fuzz_TARGET build-fuzz/crash-...
# The README's test command runs this for 10 seconds a target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
build=${FUZZ_BUILD_DIR:-build-fuzz}
CXX=clang++ CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREWIND_FUZZ=ON \
  -DREWIND_TESTS=OFF ${CI:+-DREWIND_WERROR=ON} >/dev/null
targets=(segment manifest time frames store)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  echo "fuzz_$t: ${seconds}s"
  (cd "$build" && "./fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "corpus/$t" "../fuzz/corpus/$t" 2>"fuzz_$t.log") ||
    { tail -n 40 "$build/fuzz_$t.log"; echo "FAIL: fuzz_$t found a problem (input saved in $build/)"; exit 1; }
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$build/fuzz_$t.log" | sed "s/^/  /" || true
done
echo "PASS: fuzzers ran ${seconds}s each without a crash"
