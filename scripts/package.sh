#!/usr/bin/env bash
# Builds rewind's Debian packages, rewind and rewind-server (dist/debian/package.cmake),
# in build-package/ (or $BUILD_DIR), checks them with lintian (any error fails), and
# prints their paths. Installs what is missing first (as root), like the README's
# commands. scripts/package-check.sh installs them into a fresh Debian 12 root.
#   scripts/package.sh [CMAKE_ARG]...
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --package
build=${BUILD_DIR:-build-package}
mkdir -p "$build"
rm -f "$build"/*.deb
BUILD_DIR=$build scripts/build.sh -DCMAKE_INSTALL_PREFIX=/usr -DREWIND_DEB=ON -DREWIND_TESTS=OFF "$@" \
  >"$build/build.log" 2>&1 || {
  tail -20 "$build/build.log" >&2
  echo "package: the build failed (the log: $build/build.log)" >&2
  exit 1
}
(cd "$build" && cpack -G DEB >cpack.log 2>&1) || {
  tail -20 "$build/cpack.log" >&2
  echo "package: cpack failed (the log: $build/cpack.log)" >&2
  exit 1
}
debs=("$build"/*.deb)
[ -e "${debs[0]}" ] || { echo "package: cpack made no .deb" >&2; exit 1; }
# Errors fail; warnings are printed. (As root, lintian first says it would rather not
# run as root; it checks the same.)
rc=0
lintian --fail-on error "${debs[@]}" >"$build/lintian.log" 2>&1 || rc=$?
grep -v '^running with root privileges' "$build/lintian.log" >&2 || true
if [ $rc -ne 0 ]; then
  echo "package: lintian found errors in ${debs[*]}" >&2
  exit 1
fi
for d in "${debs[@]}"; do
  echo "$(realpath "$d")"
done
