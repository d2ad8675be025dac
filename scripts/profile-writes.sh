#!/usr/bin/env bash
# Where the write path's CPU goes (docs/PERFORMANCE.md, "Profile of the write path"):
# random 4 KiB writes at QD16, or with --seq sequential 64 KiB writes at QD4 (fio's
# nbd engine) against `nbdkit file` and the rewind plugin, each serving a prefilled
# copy of one image, and `nbdkit null` (which drops every write: the cost of nbdkit's
# own request path), alternating, and per write of each server:
#   - CPU time, from the kernel's accounting of the nbdkit process (utime + stime of
#     every thread, /proc/PID/task/*/stat), split by thread name, user and system, and
#     each job's with their median (runs of one build differ by several µs here: use
#     --rounds 5 or more to tell a lever from that);
#   - system calls, futex calls, context switches (voluntary and not) and page faults,
#     counted by `perf stat` on the process's threads;
# then `perf record -g` of each server during one more job, reported by thread and
# symbol (self time) and by symbol with what it calls (inclusive time).
#
#   scripts/profile-writes.sh [--size SIZE] [--runtime SECONDS] [--rounds N] [--sparse]
#                             [--seq]
#
# --sparse runs each job on new sparse images (every write allocates a block of the
# image) instead of on a prefilled image and a copy of it. --seq profiles sequential
# 64 KiB writes at QD4 (the sequential job of scripts/bench.sh) instead.
# REWIND_PLUGIN=PATH profiles another build of the plugin (for a before and after:
# build the older commit in a git worktree and run the script once with each).
#
# Runs as root (perf, the page cache); installs what is missing and builds build/
# first. Works in $BENCH_DIR (default /var/tmp/rewind-profile). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
size=1G runtime=10 rounds=2 sparse=0
pattern=(--rw=randwrite --bs=4k --iodepth=16)
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift ;;
    --runtime) runtime=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --sparse) sparse=1 ;;
    --seq) pattern=(--rw=write --bs=64k --iodepth=4) ;;
    *) echo "profile-writes: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "profile-writes: run as root (perf)" >&2; exit 1; }
scripts/install-deps.sh --bench >/dev/null
command -v perf >/dev/null || apt-get install -y -q linux-perf >/dev/null
BUILD_DIR=build scripts/build.sh >/dev/null
plugin=${REWIND_PLUGIN:-$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so}
# Debian's perf may be a wrapper that looks for a binary of the running kernel's
# version (perf_X.Y); any version will do.
perf_bin=perf
perf --version >/dev/null 2>&1 ||
  perf_bin=$(find /usr/bin -name 'perf_*' | sort -V | tail -n 1)

dir=${BENCH_DIR:-/var/tmp/rewind-profile}
rm -rf "$dir"
mkdir -p "$dir"
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
uri() { echo "nbd+unix:///?socket=$1"; }
serve() {  # NAME ARGS...: nbdkit on $dir/NAME.sock; sets served_pid
  local name=$1
  shift
  rm -f "$dir/$name.sock"
  nbdkit -f -U "$dir/$name.sock" "$@" 2>>"$dir/$name.log" &
  served_pid=$!
  pids+=("$served_pid")
  for _ in $(seq 1 400); do
    nbdinfo --size "$(uri "$dir/$name.sock")" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "profile-writes: $name did not start: $(cat "$dir/$name.log")" >&2
  exit 1
}
cpu_ticks() {  # PID: "NAME TICKS" (utime + stime), then "NAME:user" and "NAME:sys"
  # ticks, per thread alive, then "all TICKS"
  local t
  for t in /proc/"$1"/task/*; do
    awk '{ name = $0; sub(/^[0-9]+ \(/, "", name); sub(/\) .*/, "", name); gsub(/ /, "_", name);
           n = split($0, f, ") "); split(f[n], g, " ");
           print name, g[12] + g[13]; print name ":user", g[12]; print name ":sys", g[13] }' \
      "$t/stat"
  done
  # The process's own figure also counts threads that have exited.
  awk '{ n = split($0, f, ") "); split(f[n], g, " "); print "all", g[12] + g[13] }' "/proc/$1/stat"
}

# new_images: both servers on new images: sparse ones with --sparse, else a prefilled
# image and a copy of it.
file_pid='' rewind_pid='' null_pid=''
new_images() {
  local p
  for p in $file_pid $rewind_pid $null_pid; do
    kill -TERM "$p"
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$dir/file.img" "$dir/rewind.img" "$dir/rewind.rewind"
  truncate -s "$size" "$dir/file.img"
  serve file file "$dir/file.img"
  file_pid=$served_pid
  serve null null "$size"
  null_pid=$served_pid
  if [ "$sparse" -eq 1 ]; then
    truncate -s "$size" "$dir/rewind.img"
  else
    fio --name=prefill --ioengine=nbd --uri="$(uri "$dir/file.sock")" --size="$size" \
      --rw=write --bs=1M --iodepth=4 >/dev/null
    cp "$dir/file.img" "$dir/rewind.img"
  fi
  sync
  serve rewind "$plugin" image="$dir/rewind.img" journal="$dir/rewind.rewind"
  rewind_pid=$served_pid
  sync
}
new_images

# job NAME PID: one random-write job against NAME; the counts are taken over a window
# inside it (nbdkit starts a connection's threads when fio connects, and they end with
# it), from 1 s after the start to 1 s before the end, and scaled to the job's writes.
job() {
  local name=$1 pid=$2 before after writes window=$((runtime - 2))
  fio --name=w --ioengine=nbd --uri="$(uri "$dir/$name.sock")" --size="$size" \
    "${pattern[@]}" --randrepeat=0 --norandommap --time_based \
    --runtime="$runtime" --output-format=json >"$dir/$name.fio" &
  local fio_pid=$!
  sleep 1
  before=$(cpu_ticks "$pid")
  "$perf_bin" stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_futex,context-switches,page-faults \
    -p "$pid" -o "$dir/$name.perfstat" -- sleep "$window"
  after=$(cpu_ticks "$pid")
  wait "$fio_pid"
  writes=$(sed -n '/^{/,$p' "$dir/$name.fio" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["total_ios"])')
  python3 - "$name" "$writes" "$window" "$runtime" "$dir/$name.perfstat" "$before" "$after" \
    >>"$dir/rows" <<'PY'
import json, sys
name, writes, window, runtime, stat, before, after = sys.argv[1:]
def ticks(text):
    out = {}
    for line in text.splitlines():
        n, t = line.rsplit(" ", 1)
        out[n] = out.get(n, 0) + int(t)
    return out
b, a = ticks(before), ticks(after)
by_thread = {n: a[n] - b.get(n, 0) for n in a}
counts = {}
for line in open(stat):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        counts[f[2]] = float(f[0])
# The writes in the window: the job's, in proportion (the rate is steady).
print(json.dumps({"name": name, "writes": int(writes), "window": int(writes) * int(window) / int(runtime),
                  "ticks": by_thread, "counts": counts}))
PY
}
: >"$dir/rows"
for round in $(seq 1 "$rounds"); do
  order="null file rewind"
  [ $((round % 2)) -eq 0 ] && order="rewind file null"
  for e in $order; do
    [ "$sparse" -eq 1 ] && [ "$e" != null ] && new_images
    pid=$file_pid
    [ "$e" = rewind ] && pid=$rewind_pid
    [ "$e" = null ] && pid=$null_pid
    job "$e" "$pid"
  done
done
hz=$(getconf CLK_TCK)
python3 - "$dir/rows" "$hz" "$runtime" "$sparse" "${pattern[*]}" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
hz, runtime = int(sys.argv[2]), sys.argv[3]
what = "Sequential 64 KiB writes at QD4" if "--bs=64k" in sys.argv[5] else "Random 4 KiB writes at QD16"
print(f"{what}, {len(rows) // 3} jobs of {runtime} s per server "
      f"({'each on new sparse images' if sys.argv[4] == '1' else 'prefilled images'}); per write, "
      "counted over each job but its first and last second:")
print()
kib = 64 if "--bs=64k" in sys.argv[5] else 4
print("| server | IOPS | MiB/s | CPU µs | CPU µs of each job (median) | system calls | futex calls | context switches | page faults |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
per = {}
for name in ("null", "file", "rewind"):
    rs = [r for r in rows if r["name"] == name]
    w = sum(r["window"] for r in rs)
    ticks = collections.Counter()
    counts = collections.Counter()
    for r in rs:
        ticks.update(r["ticks"])
        counts.update(r["counts"])
    per[name] = (w, ticks)
    iops = sum(r["writes"] for r in rs) / (len(rs) * float(runtime))
    # Runs of one build on this kind of VM fall into two modes a few µs apart: each
    # job's figure, and their median, tell a lever from that noise.
    each = [r["ticks"]["all"] / hz * 1e6 / r["window"] for r in rs]
    jobs = ", ".join(f"{c:.1f}" for c in each) + f" ({statistics.median(each):.1f})"
    print(f"| {name} | {iops:,.0f} | {iops * kib / 1024:,.0f} | {ticks['all'] / hz * 1e6 / w:.1f} | {jobs} | "
          f"{counts['raw_syscalls:sys_enter'] / w:.2f} | "
          f"{counts['syscalls:sys_enter_futex'] / w:.2f} | {counts['context-switches'] / w:.2f} | "
          f"{counts['page-faults'] / w:.2f} |")
print()
print("CPU µs per write by thread, user + system (nbdkit: its request threads and main")
print("thread):")
print()
for name in ("null", "file", "rewind"):
    w, ticks = per[name]
    us = lambda t: ticks[t] / hz * 1e6 / w
    parts = ", ".join(f"{t} {us(t):.1f} ({us(t + ':user'):.1f} + {us(t + ':sys'):.1f})"
                      for t, v in ticks.most_common() if v and t != "all" and ":" not in t)
    print(f"- {name}: {parts}")
PY

# Each server's profile during one more job (from 1 s after its start).
profile() {  # NAME
  local name=$1 pid fio_pid
  [ "$sparse" -eq 1 ] && new_images
  pid=$file_pid
  [ "$name" = rewind ] && pid=$rewind_pid
  fio --name=w --ioengine=nbd --uri="$(uri "$dir/$name.sock")" --size="$size" "${pattern[@]}" \
    --randrepeat=0 --norandommap --time_based --runtime="$runtime" >/dev/null &
  fio_pid=$!
  sleep 1
  "$perf_bin" record -g -F 999 -p "$pid" -o "$dir/$name.perf" -- sleep $((runtime - 2)) \
    2>/dev/null
  wait "$fio_pid"
  echo
  echo "perf report of the $name server: self time by thread and symbol, 0.7% and more:"
  echo
  echo '```'
  "$perf_bin" report -i "$dir/$name.perf" --no-children --sort comm,symbol -g none --stdio \
    --percent-limit 0.7 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-110
  echo '```'
  echo
  echo "Inclusive time (children) by symbol, 4% and more:"
  echo
  echo '```'
  "$perf_bin" report -i "$dir/$name.perf" --children --sort symbol -g none --stdio \
    --percent-limit 4 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-110
  echo '```'
}
profile file
profile rewind
kill -TERM "$rewind_pid" "$file_pid" "$null_pid" 2>/dev/null || true
