#!/usr/bin/env bash
# The README's second command: installs what is missing, builds (warnings are errors),
# and runs the whole test suite with CTest; then the same suite built with
# AddressSanitizer and UndefinedBehaviorSanitizer (scripts/sanitize.sh, in
# build-address-undefined/), and each fuzzer for a short run (scripts/fuzz.sh).
# REWIND_QUICK=1 runs the first pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
build=${BUILD_DIR:-build}
BUILD_DIR=$build scripts/build.sh -DREWIND_WERROR=ON
(cd "$build" && ctest --output-on-failure -j2 --timeout 600)
[ -n "${REWIND_QUICK:-}" ] && exit 0

BUILD_DIR=$build scripts/sanitize.sh address,undefined

echo "== fuzzers, 10 s each"
scripts/fuzz.sh 10
