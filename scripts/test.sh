#!/usr/bin/env bash
# The README's second command: installs what is missing, builds (warnings are errors),
# and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DREWIND_WERROR=ON
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j2 --timeout 600
