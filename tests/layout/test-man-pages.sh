#!/usr/bin/env bash
# The man pages (dist/man/*.pod) are well-formed and in step with the programs' --help:
# every plugin key in `nbdkit rewind --help` is an item of nbdkit-rewind-plugin(1) and
# every item is a key; every subcommand of `rewind` has its section in rewind(1), and
# every option of any subcommand is in it and the reverse; every option of
# rewind-server is in rewind-server(8) and the reverse, and so is every option of
# rewind-attach in rewind-attach(8). The built pages render.
set -euo pipefail
: "${REWIND_PLUGIN:?set by CTest}" "${REWIND_CLI:?set by CTest}" "${REWIND_SERVER:?set by CTest}"
: "${REWIND_MAN:?set by CTest: the folder of the built man pages}"
man=$(cd "$(dirname "$0")/../../dist/man" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

for pod in "$man"/*.pod; do
  podchecker -warnings "$pod" 2>&1 | grep -q "pod syntax OK" || fail "podchecker: $(podchecker "$pod" 2>&1)"
done
for page in nbdkit-rewind-plugin.1 rewind.1 rewind-server.8 rewind-attach.8; do
  [ -s "$REWIND_MAN/$page" ] || fail "$REWIND_MAN/$page was not built"
  MANWIDTH=80 man -l "$REWIND_MAN/$page" 2>/dev/null | grep -q "^NAME" || fail "$page does not render"
done

# same WHAT A B: the sorted word lists A (from --help) and B (from the page) are equal.
same() {
  [ "$2" = "$3" ] && return 0
  echo "in --help only: $(comm -23 <(echo "$2") <(echo "$3") | tr '\n' ' ')" >&2
  echo "in the man page only: $(comm -13 <(echo "$2") <(echo "$3") | tr '\n' ' ')" >&2
  fail "$1 differ between --help and the man page"
}

# nbdkit with a sanitizer build of the plugin needs its runtime preloaded.
plugin_help() {
  LD_PRELOAD="${REWIND_PRELOAD:-}" ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0 \
    nbdkit "$REWIND_PLUGIN" --help 2>&1
}
help=$(plugin_help | sed -n '/^plugin: rewind/,$p' |
  grep -oE '(^|\| )[a-z-]+=' | sed 's/^| //' | sort -u)
[ "$(echo "$help" | wc -l)" -ge 30 ] || fail "only $(echo "$help" | wc -l) keys in the plugin's --help"
page=$(grep -oE '^=item B<[a-z-]+=' "$man/nbdkit-rewind-plugin.pod" | sed 's/^=item B<//' | sort -u)
same "plugin keys" "$help" "$page"

subs=$("$REWIND_CLI" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF {print $1}' | sort)
[ "$(echo "$subs" | wc -l)" -ge 13 ] || fail "only $(echo "$subs" | wc -l) subcommands in rewind --help"
page=$(sed -n 's/^=head2 rewind \([a-z]*\)$/\1/p' "$man/rewind.pod" | sort)
same "rewind's subcommands" "$subs" "$page"
help=$(for s in $subs; do "$REWIND_CLI" "$s" --help; done | sed -n '/^Options:/,/^$/p' |
  grep -oE '^\s+(-[a-zA-Z],)?--[a-z-]+' | sed 's/.*--/--/' | grep -vx -- '--help\|--help-all' | sort -u)
page=$(grep -oE 'B<--[a-z-]+>' "$man/rewind.pod" | sed 's/B<\(.*\)>/\1/' | sort -u)
same "rewind's options" "$help" "$page"

help=$("$REWIND_SERVER" --help | grep -oE '^\s+(-[a-zA-Z],)?--[a-z0-9-]+' | sed 's/.*--/--/' | sort -u)
page=$(grep '^=item ' "$man/rewind-server.pod" | grep -oE 'B<--[a-z0-9-]+>' | sed 's/B<\(.*\)>/\1/' | sort -u)
same "rewind-server's options" "$help" "$page"

attach=$(dirname "$0")/../../scripts/rewind-attach
# (Its --help prints the usage and exits 2, as any usage error does.)
help=$({ "$attach" --help 2>&1 || true; } | grep -oE -- '--[a-z-]+' | sort -u)
page=$(grep '^=item ' "$man/rewind-attach.pod" | grep -oE 'B<--[a-z-]+>' | sed 's/B<\(.*\)>/\1/' | sort -u)
[ "$(echo "$help" | wc -l)" -ge 6 ] || fail "only $(echo "$help" | wc -l) options in rewind-attach --help"
same "rewind-attach's options" "$help" "$page"
echo "PASS: the man pages list every key and option of the programs' --help, and no other"
