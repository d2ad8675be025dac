#!/usr/bin/env bash
# How much journal a rewrite-heavy workload leaves, with coalescing off and on, after
# compaction to one state per second and per minute, and after a rebase: prints a
# markdown table (docs/PERFORMANCE.md, "Journal size").
#
#   scripts/journal-size.sh [--written SIZE] [--area SIZE] [--flush-every N]
#
# fio (nbd engine) writes SIZE (default 512M) in random 4 KiB writes over the first
# AREA (default 16M) of a 1 GiB volume, with an NBD FLUSH after every N writes
# (default 256), once with coalesce=off and once with coalesce=on. Works in
# $BENCH_DIR (default /var/tmp/rewind-journal-size); installs fio and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
written=512M area=16M every=256
while [ $# -gt 0 ]; do
  case "$1" in
    --written) written=$2; shift ;;
    --area) area=$2; shift ;;
    --flush-every) every=$2; shift ;;
    *) echo "journal-size: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
scripts/install-deps.sh --bench
BUILD_DIR=build scripts/build.sh >/dev/null
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
cli=$root/build/cli/rewind
dir=${BENCH_DIR:-/var/tmp/rewind-journal-size}
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

info() { "$cli" info --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
echo "| coalesce | written | unique | journal | journal / written | journal / unique | coalesced writes | after \`compact --granularity 1s\` | then \`1m\` | journal / unique | after \`rebase\` |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in off on; do
  img=$dir/$mode.img journal=$dir/$mode.rewind sock=$dir/$mode.sock
  truncate -s 1G "$img"
  nbdkit -U "$sock" "$plugin" image="$img" journal="$journal" coalesce=$mode --run \
    "fio --name=rw --ioengine=nbd --uri=\"\$uri\" --rw=randwrite --bs=4k --iodepth=16 \
       --size=$area --io_size=$written --fsync=$every --randrepeat=0 --norandommap --output-format=json \
       | sed -n '/^{/,\$p' > $dir/$mode.json"
  bytes=$(python3 -c "import json; print(json.load(open('$dir/$mode.json'))['jobs'][0]['write']['io_bytes'])")
  jbytes=$(info "$journal" journal_bytes)
  # Unique bytes: the distinct 4 KiB blocks of the area the history wrote.
  unique=$("$cli" diff "$journal" --from seq:0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
  coalesced=$("$cli" log --json "$journal" | python3 -c '
import json, sys
print(sum(s["coalesced"] for s in json.load(sys.stdin)["segments"]))')
  "$cli" compact "$journal" --before now --granularity 1s >/dev/null
  per_s=$(info "$journal" journal_bytes)
  "$cli" compact "$journal" --before now --granularity 1m >/dev/null
  per_m=$(info "$journal" journal_bytes)
  "$cli" rebase "$journal" --before now >/dev/null
  after=$(info "$journal" journal_bytes)
  python3 - "$mode" "$bytes" "$unique" "$jbytes" "$coalesced" "$per_s" "$per_m" "$after" <<'PY'
import sys
mode, w, u, j, c, s, m, a = sys.argv[1], *map(int, sys.argv[2:])
mib = lambda b: f"{b / 2**20:,.1f} MiB"
print(f"| {mode} | {mib(w)} | {mib(u)} | {mib(j)} | {j / w:.3f} | {j / u:.1f} | {c:,} | {mib(s)} "
      f"| {mib(m)} | {m / u:.2f} | {mib(a)} |")
PY
done
echo
echo "- random 4 KiB writes, QD16, over the first $area of a 1 GiB volume, a FLUSH after every $every"
