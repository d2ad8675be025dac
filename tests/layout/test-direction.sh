#!/usr/bin/env bash
# scripts/check-layers.sh passes on this tree, and fails on a copy of it with an
# include that points up a layer (a base/ file including a journal/ header), one that
# points sideways (replay/ including volume/) and one of a header outside the layers,
# naming each file and line.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
check=$src/scripts/check-layers.sh
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$check" "$src" || fail "the source tree breaks the layers"

tmp=$(mktemp -d /tmp/rewind-layers.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/base" "$src/replay" "$src/include" "$tmp/"
victim=base/units.cpp
sed -i '1a #include "rewind/journal/journal.h"\n#include "rewind/manifest.h"' "$tmp/$victim"
sed -i '1a #include "rewind/volume/volume.h"' "$tmp/include/rewind/replay/view.h"
rc=0
"$check" "$tmp" >"$tmp/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "a wrong include passed the check (exit $rc): $(cat "$tmp/out")"
grep -q "^check-layers: $victim:2 includes rewind/journal/journal.h: base/ may include only its own headers;" \
  "$tmp/out" || fail "the upward include is not reported: $(cat "$tmp/out")"
grep -q "^check-layers: $victim:3 includes rewind/manifest.h, which is in no layer" "$tmp/out" ||
  fail "the include outside the layers is not reported: $(cat "$tmp/out")"
grep -q "^check-layers: include/rewind/replay/view.h:2 includes rewind/volume/volume.h: replay/" \
  "$tmp/out" || fail "the sideways include is not reported: $(cat "$tmp/out")"
echo PASS
