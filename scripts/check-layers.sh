#!/usr/bin/env bash
# Checks that rewind's dependencies point one way: a folder is a layer
# (docs/ARCHITECTURE.md), and a file of a layer -- its sources in FOLDER/ and its public
# headers in include/rewind/FOLDER/ -- may include its own layer's headers and those of
# the layers it is built on, never one above it or beside it.
#
#   scripts/check-layers.sh [ROOT]     ROOT: the source tree (default: this one)
#
# A header outside include/rewind/LAYER/ belongs to no layer, and including one is
# wrong too. Prints one line per wrong include (the file, the line, the header and the
# rule) and exits 1 if there is any, else prints a summary and exits 0.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# The layers, bottom first, with what each one may use besides itself.
layers=(base format journal volume replay history ship serve nbdkit-plugin cli)
declare -A may_use=(
  [base]=""
  [format]="base"
  [journal]="base format"
  [volume]="base format journal"
  [replay]="base format journal"
  [history]="base format journal replay"
  [ship]="base format journal volume replay history"
  [serve]="base format journal volume replay history ship"
  [nbdkit-plugin]="base format journal volume replay history ship serve"
  [cli]="base format journal volume replay history ship serve"
)
rule() {  # LAYER: what it may include, in words
  if [ -z "${may_use[$1]}" ]; then
    echo "$1/ may include only its own headers"
  else
    echo "$1/ may include only its own headers and those of ${may_use[$1]// /, }"
  fi
}
is_layer() { [ -n "${may_use[$1]+set}" ]; }

errors=0
checked=0
while IFS= read -r file; do
  case $file in
    include/rewind/*/*) layer=${file#include/rewind/}; layer=${layer%%/*} ;;
    */*) layer=${file%%/*} ;;
    *) continue ;;
  esac
  is_layer "$layer" || continue
  checked=$((checked + 1))
  while IFS=: read -r line text; do
    header=$(sed -E 's/^\s*#\s*include\s+"([^"]+)".*/\1/' <<<"$text")
    case $header in
      rewind/*/*)
        used=${header#rewind/}
        used=${used%%/*}
        if [ "$used" != "$layer" ] && [[ " ${may_use[$layer]} " != *" $used "* ]]; then
          echo "check-layers: $file:$line includes $header: $(rule "$layer");" \
            "move the code down, or make $layer/ depend on a seam of a lower layer"
          errors=$((errors + 1))
        fi
        ;;
      rewind/*)
        echo "check-layers: $file:$line includes $header, which is in no layer: $(rule "$layer")," \
          "each under include/rewind/LAYER/"
        errors=$((errors + 1))
        ;;
    esac
  done < <(grep -nE '^\s*#\s*include\s+"rewind/' "$file" || true)
done < <(git ls-files --cached --others --exclude-standard -- '*.h' '*.cpp' 2>/dev/null ||
  find . -name '*.h' -o -name '*.cpp' | sed 's|^\./||')

if [ "$errors" -gt 0 ]; then
  echo "check-layers: $errors include(s) against the layers (bottom first: ${layers[*]})" >&2
  exit 1
fi
echo "check-layers: $checked files, every include points down (bottom first: ${layers[*]})"
