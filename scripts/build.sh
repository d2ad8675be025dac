#!/usr/bin/env bash
# Configures and builds rewind in build/ (or $BUILD_DIR): everything, or only the
# targets named with --target (the demo builds the plugin and `rewind` alone). Other
# arguments go to cmake's configure step.
#   scripts/build.sh [--target NAME]... [CMAKE_ARG]...
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
targets=()
while [ $# -ge 2 ] && [ "$1" = --target ]; do
  targets+=(--target "$2")
  shift 2
done
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
