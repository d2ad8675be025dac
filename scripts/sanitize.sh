#!/usr/bin/env bash
# Builds the whole project with sanitizers in build-SANITIZERS/ (warnings are errors)
# and runs the whole test suite there: unit tests, end-to-end tests with the plugin
# inside the real nbdkit (the runtime preloaded), and the CLI. The write path's
# power-cut tests take one cut point in four (REWIND_TEST_CUT_SAMPLE=4).
#   scripts/sanitize.sh address,undefined   # what the README's test command runs
#   scripts/sanitize.sh thread              # ThreadSanitizer (about 10 minutes more)
# A report fails the test it happens in, also when it happens inside nbdkit.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizers=${1:?usage: scripts/sanitize.sh address,undefined|thread}
build=${BUILD_DIR:-build}-${sanitizers//,/-}
echo "== the suite built with -fsanitize=$sanitizers (in $build/)"
# One unity build (CMAKE_UNITY_BUILD): a third less compile time than file by file;
# the plain build (scripts/test.sh) still compiles every file on its own. -O1 and line
# tables only (-g1, which the sanitizers' reports need for file:line): instrumented code
# at -O2 -g takes twice as long to compile (tests/unit/test_view.cpp: 43 s against 19 s).
BUILD_DIR=$build scripts/build.sh -DREWIND_WERROR=ON -DREWIND_SANITIZE="$sanitizers" \
  -DCMAKE_UNITY_BUILD=ON -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
echo "== built with -fsanitize=$sanitizers in $SECONDS s"
# The power-cut tests of the write path take one of every 4 of their cut points here:
# instrumented, a cut costs several times as much, and the plain suite takes them all.
(cd "$build" && REWIND_TEST_CUT_SAMPLE=4 ctest --output-on-failure -j2 --timeout 900)
