#!/usr/bin/env bash
# Builds the whole project with sanitizers in build-SANITIZERS/ (warnings are errors)
# and runs the whole test suite there: unit tests, end-to-end tests with the plugin
# inside the real nbdkit (the runtime preloaded), and the CLI.
#   scripts/sanitize.sh address,undefined   # what the README's test command runs
#   scripts/sanitize.sh thread              # ThreadSanitizer (about 10 minutes more)
# A report fails the test it happens in, also when it happens inside nbdkit.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizers=${1:?usage: scripts/sanitize.sh address,undefined|thread}
build=${BUILD_DIR:-build}-${sanitizers//,/-}
echo "== the suite built with -fsanitize=$sanitizers (in $build/)"
# One unity build (CMAKE_UNITY_BUILD): a third less compile time than file by file;
# the plain build (scripts/test.sh) still compiles every file on its own.
BUILD_DIR=$build scripts/build.sh -DREWIND_WERROR=ON -DREWIND_SANITIZE="$sanitizers" \
  -DCMAKE_UNITY_BUILD=ON
(cd "$build" && ctest --output-on-failure -j2 --timeout 900)
