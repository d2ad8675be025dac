#!/usr/bin/env bash
# The README's second command: installs what is missing, builds (warnings are errors),
# and runs the whole test suite with CTest; then the same suite built with
# AddressSanitizer and UndefinedBehaviorSanitizer (scripts/sanitize.sh, in
# build-address-undefined/), and each fuzzer for a short run (scripts/fuzz.sh).
# REWIND_QUICK=1 runs the first pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase ends with a line saying how long it took: where the time of a run goes.
phase_start=$SECONDS
took() {
  echo "== $1: $((SECONDS - phase_start)) s (total $SECONDS s)"
  phase_start=$SECONDS
}
scripts/install-deps.sh --test
took "dependencies"
build=${BUILD_DIR:-build}
BUILD_DIR=$build scripts/build.sh -DREWIND_WERROR=ON
took "build"
# Four at a time on two cores: most end-to-end tests wait on nbdkit, Ceph or a guest
# more than they compute (439 s at -j2, 352 s at -j4 on a 2-core machine).
(cd "$build" && ctest --output-on-failure -j4 --timeout 600)
took "suite"
[ -n "${REWIND_QUICK:-}" ] && exit 0

BUILD_DIR=$build scripts/sanitize.sh address,undefined
took "sanitizer build and suite"

echo "== fuzzers, 10 s each"
scripts/fuzz.sh 10
took "fuzzers"
