#!/usr/bin/env bash
# Benchmarks of rewind against a plain `nbdkit file` export, measured in one run on
# one machine, printed as markdown tables (docs/PERFORMANCE.md holds a run).
#
#   scripts/bench.sh [io|restore|view|compress|bisect|all] [--size SIZE] [--runtime SECONDS]
#                    [--rounds N]
#
#   io       the same fio jobs (fio's nbd engine) against `nbdkit file` and the rewind
#            plugin, alternating file/rewind then rewind/file for each round, first
#            each job on new sparse images, then on images written whole first: IOPS,
#            bandwidth, p99 latency, CPU time per operation of each server (the
#            kernel's accounting of the process), ratios; the plugin's peak RSS;
#            journal bytes per byte written; the disk's own O_DIRECT write rate, with and
#            without the fdatasync at its end
#   restore  a 1 GiB volume given 4x its size in random 4k-64k writes: `rewind restore`
#            to the end and to the middle against `cp --sparse=never` of the image,
#            page cache dropped before each; then the history doubled by rewriting the
#            same area, and the restore to the end timed again
#   view     a journal of 1 million records: time to open a point-in-time export,
#            and its sequential read rate against the live export
#   compress compress=zstd against compress=off: per byte written, the journal's bytes,
#            and the bytes the plugin's shipper sends (ship-compress=zstd) and a log
#            server on loopback stores, for random data, fio's 50% compressible
#            buffers and an ext4 file system holding a copy of /usr/share; then random
#            4 KiB writes at QD16 and sequential 64 KiB writes at QD4 of 50%
#            compressible data with compress=off, zstd on one thread and zstd on the
#            default compress-threads=, alternating, with CPU time per operation
#   bisect   `rewind bisect` over a journal of 1 million records (random 4 KiB writes,
#            a FLUSH after every 64): the points, the steps, the time of each (the
#            point served writable by nbdkit, a check that reads it with qemu-io), and
#            the whole search
#
# Runs as root (to drop the page cache); installs what is missing (fio among it, with
# scripts/install-deps.sh --bench) and builds build/ (scripts/build.sh) first.
# Works in $BENCH_DIR (default /var/tmp/rewind-bench, 30 GiB free), on the disk being
# measured. All of it takes about 15 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
what=all size=1G runtime=15 rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    io | restore | view | compress | bisect | all) what=$1 ;;
    --size) size=$2; shift ;;
    --runtime) runtime=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "bench: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (the page cache is dropped between runs)" >&2; exit 1; }
scripts/install-deps.sh --bench
BUILD_DIR=build scripts/build.sh >/dev/null
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
cli=$root/build/cli/rewind

dir=${BENCH_DIR:-/var/tmp/rewind-bench}
rm -rf "$dir"
mkdir -p "$dir"
# A run keeps up to about 20 GiB of images and journals there at once.
free=$(df --output=avail -B1G "$dir" | tail -n 1)
[ "$free" -ge 30 ] || { echo "bench: $dir has $free GiB free; it needs 30 (set BENCH_DIR)" >&2; exit 1; }
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
uri() { echo "nbd+unix:///?socket=$1"; }

# serve NAME ARGS...: nbdkit in the foreground on $dir/NAME.sock; sets served_pid.
serve() {
  local name=$1 i
  shift
  rm -f "$dir/$name.sock"
  nbdkit -f -U "$dir/$name.sock" "$@" 2>>"$dir/$name.log" &
  served_pid=$!
  pids+=("$served_pid")
  for i in $(seq 1 400); do
    nbdinfo --size "$(uri "$dir/$name.sock")" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  cat "$dir/$name.log" >&2
  echo "bench: $name did not start" >&2
  exit 1
}
stop() {  # stop PID: SIGTERM and wait (the plugin drains and checkpoints)
  kill -TERM "$1"
  wait "$1" 2>/dev/null || true
}

json_of() {  # json_of JOURNAL FIELD: a field of `rewind info --json`
  "$cli" info --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

# fio_json SOCKET ARGS...: one fio job against the export, JSON on stdout (without
# the line the nbd engine prints before it).
fio_json() {
  local sock=$1
  shift
  fio --name=bench --ioengine=nbd --uri="$(uri "$sock")" --size="$size" --output-format=json \
    --randrepeat=0 --norandommap --group_reporting "$@" | sed -n '/^{/,$p'
}

# ------------------------------------------------------------------------------------
bench_io() {
  local mode
  for mode in sparse prefilled; do
    bench_io_on "$mode"
    echo
  done
  # What the disk itself takes: every byte rewind journals goes to it, around the cache,
  # and is synced. Measured both ways: a virtual disk may take O_DIRECT writes into a
  # cache of the host's and pay for them at the sync.
  local disk synced
  disk=$(disk_rate)
  synced=$(disk_rate --end_fsync=1)
  printf -- '- the disk: sequential 4 MiB writes around the page cache (O_DIRECT) into a new file: %.0f MiB/s; with the fdatasync at the end counted: %.0f MiB/s\n' "$disk" "$synced"
}

disk_rate() {  # disk_rate [FIO ARGS]: MiB/s of 4 GiB of O_DIRECT 4 MiB writes into a new file
  local rate
  rate=$(fio --name=disk --filename="$dir/disk.test" --size=4G --fallocate=native --rw=write \
    --bs=4M --direct=1 --ioengine=psync --output-format=json "$@" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"] / 2**20)')
  rm -f "$dir/disk.test"
  echo "$rate"
}

# cpu_ticks PID: the CPU time (utime + stime, in clock ticks) of a server process, its
# exited threads included (nbdkit's request threads live as long as a connection).
cpu_ticks() {
  awk '{ n = split($0, f, ") "); split(f[n], g, " "); print g[12] + g[13] }' "/proc/$1/stat"
}

# bench_io_on sparse|prefilled: the jobs against both exports, each job on a new sparse
# image (every write allocates, every read of what was not written reads a hole), or
# on images written whole first (writes overwrite data, reads read it).
bench_io_on() {
  local mode=$1
  local img=$dir/file.img file_pid='' rewind_pid='' hwm=0 jbytes=0
  new_images() {  # new images for both exports (sparse), and the servers on them
    [ -n "$file_pid" ] && stop "$file_pid"
    if [ -n "$rewind_pid" ]; then
      stop "$rewind_pid"
      jbytes=$((jbytes + $(json_of "$dir/rewind.rewind" journal_bytes)))
    fi
    rm -rf "$img" "$dir/rewind.img" "$dir/rewind.rewind"
    truncate -s "$size" "$img" "$dir/rewind.img"
    serve file file "$img"
    file_pid=$served_pid
    rewind_pid=
    fresh_rewind
  }
  # The rewind server starts each run on a new journal (a base snapshot of the image as
  # it is): a journal keeps every byte written, and a run writes tens of GiB.
  fresh_rewind() {
    if [ -n "$rewind_pid" ]; then
      stop "$rewind_pid"
      jbytes=$((jbytes + $(json_of "$dir/rewind.rewind" journal_bytes)))
      rm -rf "$dir/rewind.rewind"
    fi
    serve rewind "$plugin" image="$dir/rewind.img" journal="$dir/rewind.rewind"
    rewind_pid=$served_pid
    # The new journal's base snapshot is a copy of the image, left dirty in the page
    # cache: written back now, not by the kernel 30 s later, which is during the next
    # rewind run (a file run of 15 s always comes first).
    sync
  }
  peak() {  # the plugin's peak RSS so far
    local h
    h=$(awk '/^VmHWM/ {print $2 * 1024}' "/proc/$rewind_pid/status")
    [ "$h" -gt "$hwm" ] && hwm=$h
    return 0
  }
  new_images
  if [ "$mode" = prefilled ]; then
    # Both images fully written first, so that reads read data and writes overwrite it.
    for e in file rewind; do
      fio_json "$dir/$e.sock" --rw=write --bs=1M --iodepth=4 >"$dir/prefill-$e.json"
    done
  fi

  local jobs=(
    "randwrite-4k-qd16|--rw=randwrite --bs=4k --iodepth=16"
    "write-64k-qd4|--rw=write --bs=64k --iodepth=4"
    "randwrite-4k-qd16-flush16|--rw=randwrite --bs=4k --iodepth=16 --fsync=16"
    "randread-4k-qd16|--rw=randread --bs=4k --iodepth=16"
    "randrw-70-30-4k-qd16|--rw=randrw --rwmixread=70 --bs=4k --iodepth=16"
  )
  local round job name args order e pid t0
  for round in $(seq 1 "$rounds"); do
    for job in "${jobs[@]}"; do
      name=${job%%|*} args=${job#*|}
      [ "$mode" = sparse ] && new_images
      order="file rewind"
      [ $((round % 2)) -eq 0 ] && order="rewind file"
      for e in $order; do
        pid=$file_pid
        [ "$e" = rewind ] && pid=$rewind_pid
        t0=$(cpu_ticks "$pid")
        # shellcheck disable=SC2086
        fio_json "$dir/$e.sock" $args --time_based --runtime="$runtime" \
          >"$dir/$mode.$name.$e.$round.json"
        # What the job left queued is journaled and applied within the second.
        sleep 1
        echo "$(($(cpu_ticks "$pid") - t0))" >"$dir/$mode.$name.$e.$round.cpu"
        if [ "$e" = rewind ]; then
          peak
          [ "$mode" = prefilled ] && fresh_rewind
        fi
      done
    done
  done
  peak
  stop "$rewind_pid"
  jbytes=$((jbytes + $(json_of "$dir/rewind.rewind" journal_bytes)))
  stop "$file_pid"

  python3 - "$dir" "$mode" "$rounds" "$hwm" "$jbytes" "$(getconf CLK_TCK)" "${jobs[@]%%|*}" <<'PY'
import glob, json, os, statistics, sys
d, mode, rounds, hwm, jbytes, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
names = sys.argv[7:]
def load(path):
    with open(path) as f:
        return json.load(f)["jobs"][0]
def figures(name, e):
    iops, bw, p99, cpu = [], [], [], []
    for r in range(1, rounds + 1):
        j = load(f"{d}/{mode}.{name}.{e}.{r}.json")
        iops.append(j["read"]["iops"] + j["write"]["iops"])
        bw.append((j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 2**20)
        p = [j[k]["clat_ns"]["percentile"]["99.000000"] for k in ("read", "write")
             if j[k]["total_ios"] > 0]
        p99.append(max(p) / 1e3)
        ops = j["read"]["total_ios"] + j["write"]["total_ios"]
        ticks = int(open(f"{d}/{mode}.{name}.{e}.{r}.cpu").read())
        cpu.append(ticks / hz * 1e6 / ops)
    return statistics.mean(iops), statistics.mean(bw), statistics.mean(p99), statistics.mean(cpu)
print(f"On {'new sparse images (each job on new ones)' if mode == 'sparse' else 'images written whole first'}:")
print()
print("| job | file IOPS | rewind IOPS | file MiB/s | rewind MiB/s | file p99 µs | rewind p99 µs | file CPU µs/op | rewind CPU µs/op | rewind/file IOPS | rewind/file CPU |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    fi, fb, fp, fc = figures(n, "file")
    ri, rb, rp, rc = figures(n, "rewind")
    print(f"| {n} | {fi:,.0f} | {ri:,.0f} | {fb:,.1f} | {rb:,.1f} | {fp:,.0f} | {rp:,.0f} | {fc:.1f} | {rc:.1f} | **{ri / fi:.2f}x** | {rc / fc:.2f}x |")
written = 0
for path in glob.glob(f"{d}/{mode}.*.rewind.*.json") + glob.glob(f"{d}/prefill-rewind.json"):
    written += load(path)["write"]["io_bytes"]
print()
print(f"- plugin peak RSS (VmHWM): {hwm / 2**20:.0f} MiB (queue-max 64 MiB)")
print(f"- journal bytes / bytes written: {jbytes / written:.3f} ({jbytes / 2**30:.2f} GiB journal for {written / 2**30:.2f} GiB written)")
print(f"- each figure is the mean of {rounds} runs of {os.environ.get('RUNTIME', '?')} s per export; file then rewind in odd rounds, rewind then file in even ones; CPU µs/op: the server process's user and system time per operation, from the kernel's accounting, over the job and the second after it")
PY
  rm -f "$dir"/file.img "$dir"/rewind.img "$dir"/prefill-*.json
  rm -rf "$dir"/rewind.rewind
}

# ------------------------------------------------------------------------------------
# timed VAR CPVAR SYNCVAR COMMAND...: runs `cp --sparse=never` of $img, the same cp
# followed by a sync of the copy, and COMMAND in turn, $repeat times each, each with a
# cold page cache; the median wall times in seconds go to VAR, CPVAR and SYNCVAR.
# Alternating keeps them under the same conditions: on a shared machine the same cp
# takes from 0.6 s to 2.4 s from one minute to the next. A restore syncs what it
# wrote; a bare cp leaves its copy in the page cache, not on the disk.
repeat=5
timed() {
  local var=$1 cpvar=$2 syncvar=$3 i times=() cps=() syncs=()
  shift 3
  secs() {
    local t0 t1
    drop_caches
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    rm -f "$dir/copy.img" "$dir/out.img"
    echo "$t1 - $t0" | bc
  }
  for i in $(seq 1 "$repeat"); do
    cps+=("$(secs cp --sparse=never "$img" "$dir/copy.img")")
    syncs+=("$(secs sh -c 'cp --sparse=never "$1" "$2" && sync "$2"' sh "$img" "$dir/copy.img")")
    times+=("$(secs "$@")")
  done
  median() { printf '%s\n' "$@" | sort -n | sed -n "$(((repeat + 1) / 2))p"; }
  printf -v "$var" '%.2f' "$(median "${times[@]}")"
  printf -v "$cpvar" '%.2f' "$(median "${cps[@]}")"
  printf -v "$syncvar" '%.2f' "$(median "${syncs[@]}")"
}

bench_restore() {
  local img=$dir/vol.img journal=$dir/vol.rewind
  truncate -s 1G "$img"
  serve vol "$plugin" image="$img" journal="$journal"
  fio_json "$dir/vol.sock" --size=1G --rw=randwrite --bsrange=4k-64k --iodepth=16 --io_size=4G \
    >/dev/null
  stop "$served_pid"
  local last mid hist1
  last=$(json_of "$journal" last_seq)
  hist1=$(json_of "$journal" journal_bytes)
  mid=$((last / 2))
  # Each restore once, checked, for its summary line (how much it read from the image).
  from_image() {  # from_image RESTORE-ARGS...: the part read from the image, or "none"
    "$cli" restore "$journal" "$@" -o "$dir/check.img" >"$dir/restore.out" 2>&1
    sed -n 's/.*; \(.*\) of it read from the image.*/\1/p' "$dir/restore.out" | grep . || echo none
  }
  local img_end img_mid
  img_end=$(from_image)
  cmp "$dir/check.img" "$img" || { echo "bench: the restore differs from the image" >&2; exit 1; }
  rm -f "$dir/check.img"
  "$cli" restore "$journal" --no-image-reads -o "$dir/check.img" >/dev/null 2>&1
  cmp "$dir/check.img" "$img" || { echo "bench: the journal's restore differs from the image" >&2; exit 1; }
  rm -f "$dir/check.img"
  img_mid=$(from_image --seq "$mid")
  rm -f "$dir/check.img" "$dir/restore.out"
  local t_end t_mid t_end2 c_end c_mid c_end2 s_end s_mid s_end2 t_jend c_jend s_jend
  local t_jend2 c_jend2 s_jend2
  timed t_end c_end s_end "$cli" restore "$journal" -o "$dir/out.img"
  timed t_mid c_mid s_mid "$cli" restore "$journal" --seq "$mid" -o "$dir/out.img"
  timed t_jend c_jend s_jend "$cli" restore "$journal" --no-image-reads -o "$dir/out.img"
  # Double the history: the same area rewritten as much again.
  serve vol "$plugin" image="$img" journal="$journal"
  fio_json "$dir/vol.sock" --size=1G --rw=randwrite --bsrange=4k-64k --iodepth=16 --io_size=4G \
    >/dev/null
  stop "$served_pid"
  local hist2 last2
  hist2=$(json_of "$journal" journal_bytes)
  last2=$(json_of "$journal" last_seq)
  timed t_end2 c_end2 s_end2 "$cli" restore "$journal" -o "$dir/out.img"
  timed t_jend2 c_jend2 s_jend2 "$cli" restore "$journal" --no-image-reads -o "$dir/out.img"
  gib() { echo "scale=1; $1 / 2^30" | bc; }
  row() {  # row WHAT HISTORY RECORDS RESTORE CP CP+SYNC
    printf '| %s | %s GiB | %s | %s | %s | %s | **%.2fx** | **%.2fx** |\n' "$1" "$(gib "$2")" "$3" \
      "$4" "$5" "$6" "$(echo "$4 / $5" | bc -l)" "$(echo "$4 / $6" | bc -l)"
  }
  echo "| 1 GiB volume, page cache dropped before each, medians of $repeat, in turn | history | records | restore s | cp s | cp + sync s | restore/cp | restore/(cp + sync) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row '`rewind restore` to the end' "$hist1" "$last" "$t_end" "$c_end" "$s_end"
  row "\`rewind restore\` to the middle (seq $mid)" "$hist1" "$mid" "$t_mid" "$c_mid" "$s_mid"
  row '`rewind restore --no-image-reads` to the end' "$hist1" "$last" "$t_jend" "$c_jend" "$s_jend"
  row '`rewind restore` to the end, history doubled by rewrites' "$hist2" "$last2" "$t_end2" \
    "$c_end2" "$s_end2"
  row '`rewind restore --no-image-reads` to the end, history doubled' "$hist2" "$last2" \
    "$t_jend2" "$c_jend2" "$s_jend2"
  echo
  echo "- read from the image (checked against the journal's checksums): to the end $img_end, to the middle $img_mid"
  change() { echo "($2 - $1) * 100 / $1" | bc -l; }
  printf -- '- doubling the history changed the restore time by %+.0f%%, and with --no-image-reads by %+.0f%%' \
    "$(change "$t_end" "$t_end2")" "$(change "$t_jend" "$t_jend2")"
  printf -- ' (the ratios to cp by %+.0f%% and %+.0f%%)\n' \
    "$(change "$(echo "$t_end / $c_end" | bc -l)" "$(echo "$t_end2 / $c_end2" | bc -l)")" \
    "$(change "$(echo "$t_jend / $c_jend" | bc -l)" "$(echo "$t_jend2 / $c_jend2" | bc -l)")"
  rm -rf "$img" "$journal"
}

# ------------------------------------------------------------------------------------
bench_view() {
  local img=$dir/view.img journal=$dir/view.rewind
  truncate -s 1G "$img"
  serve view "$plugin" image="$img" journal="$journal"
  # One million 4 KiB writes at random places.
  fio_json "$dir/view.sock" --size=1G --rw=randwrite --bs=4k --iodepth=16 \
    --io_size=$((1000000 * 4096)) >/dev/null
  stop "$served_pid"
  local last
  last=$(json_of "$journal" last_seq)
  # Opening: the view itself (manifest, indexes, extent map), in-process, and from
  # starting nbdkit to its first answer, with the plain file export for nbdkit's own part.
  local t_open t_view t_file
  drop_caches
  t_open=$("$root/build/tests/rewind-bench-view-open" "$journal" "$last" 3 | sort -n | sed -n 2p | cut -d' ' -f1)
  # nbdkit started, the view opened (in get_ready), and nbdkit gone again.
  run_once() {
    local t0 t1
    drop_caches
    t0=$(date +%s%N)
    nbdkit -U - "$@" --run true >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
  }
  t_view=$(run_once "$plugin" journal="$journal" seq="$last")
  t_file=$(run_once file "$img")
  # The three exports of the same state: the view reading what the image holds from
  # it (the default), the same view reading the journal alone, and the live volume.
  serve pit "$plugin" journal="$journal" seq="$last"
  local pit_pid=$served_pid
  serve jpit "$plugin" journal="$journal" seq="$last" image-reads=off
  local jpit_pid=$served_pid
  serve live "$plugin" image="$img" journal="$journal"
  local live_pid=$served_pid
  # Sequential reads of the whole volume: first with the page cache dropped (the view
  # of the journal alone then reads 4 KiB pieces all over the journal), then again with
  # what that read left in the cache. The host caches the virtual disk, which this
  # guest cannot drop, so whichever export reads the image first pays for the host's
  # read too: the cold reads go in turn, view then live, live then view, three rounds,
  # and each figure is the median of its three.
  seq_read() {
    fio_json "$dir/$1.sock" --size=1G --rw=read --bs=1M --iodepth=4 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 2**20)'
  }
  median3() { sort -n | sed -n 2p; }
  local -A cold=() warm=() runs=()
  local e round order
  for round in 1 2 3; do
    order="pit live jpit"
    [ "$round" -eq 2 ] && order="live pit jpit"
    for e in $order; do
      drop_caches
      runs[$e]+="$(seq_read "$e") "
    done
  done
  for e in pit jpit live; do
    # shellcheck disable=SC2086
    cold[$e]=$(printf '%s\n' ${runs[$e]} | median3)
  done
  # Warm, the median of three reads: one read's rate varies by a third from one minute
  # to the next on a shared host.
  for e in pit jpit live; do
    seq_read "$e" >/dev/null
    warm[$e]=$(for _ in 1 2 3; do seq_read "$e"; done | median3)
  done
  stop "$pit_pid"
  stop "$jpit_pid"
  stop "$live_pid"
  # What the disk gives for reads of 4 KiB at random places, for scale.
  drop_caches
  rand_iops=$(fio --name=rand --filename="$(ls "$journal"/segments/*.seg | head -n 1)" --readonly \
    --rw=randread --bs=4k --direct=1 --ioengine=libaio --iodepth=64 --runtime=5 --time_based \
    --output-format=json | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 2**20)')
  echo "| point-in-time export of a journal of $last records (4 KiB random writes) | figure |"
  echo "|---|---:|"
  echo "| open the view (manifest, indexes, extent map), median of 3, page cache dropped first | $t_open ms |"
  echo "| nbdkit started, view opened, nbdkit stopped (page cache dropped) | $t_view ms |"
  echo "| the same for a plain file export: nbdkit's own part | $t_file ms |"
  ratio_row() {  # ratio_row WHAT VIEW LIVE
    printf '| %s | %.0f / %.0f MiB/s = **%.2fx** |\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"
  }
  ratio_row "sequential read, page cache dropped (median of 3, in turn): view / live" "${cold[pit]}" "${cold[live]}"
  ratio_row "sequential read, again (median of 3 after one more): view / live" "${warm[pit]}" "${warm[live]}"
  ratio_row "the same view with image-reads=off (the journal alone), page cache dropped (median of 3): view / live" \
    "${cold[jpit]}" "${cold[live]}"
  ratio_row "the same view with image-reads=off, again: view / live" "${warm[jpit]}" "${warm[live]}"
  printf '| the disk: 4 KiB random reads at queue depth 64 (O_DIRECT) | %.0f MiB/s |\n' "$rand_iops"
  echo
  # The first round's view read the image from the host's disk; later reads find much
  # of it in the host's cache.
  rounds_of() {  # rounds_of "A B C": "A, B, C", rounded
    local v out=()
    for v in $1; do out+=("$(printf '%.0f' "$v")"); done
    echo "${out[0]}, ${out[1]}, ${out[2]}"
  }
  printf -- '- each cold read in MiB/s, round by round: view %s; live %s; image-reads=off %s\n' \
    "$(rounds_of "${runs[pit]}")" "$(rounds_of "${runs[live]}")" "$(rounds_of "${runs[jpit]}")"
  rm -rf "$img" "$journal"
}

# ------------------------------------------------------------------------------------
bench_compress() {
  local server
  server=$root/build/ship/rewind-server
  [ -x "$server" ] || { echo "bench: $server is not built" >&2; exit 1; }
  # The ext4 file system: a copy of /usr/share made by mkfs.ext4 -d, in an image twice
  # the tree's size.
  local tree_kib
  tree_kib=$(du -sk /usr/share | cut -f1)
  mkfs.ext4 -q -F -E root_owner=0:0 -d /usr/share "$dir/ext4.img" "$((tree_kib * 2))k"
  printf 'tok vol\n' >"$dir/tokens"
  printf 'tok\n' >"$dir/token"
  chmod 600 "$dir/tokens" "$dir/token"
  ship_state() {  # ship_state JOURNAL: the plugin's shipper state, one JSON object
    "$cli" info --json "$1" | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['ship']))"
  }
  shipped() {  # shipped JOURNAL: waits until the log server holds every durable record
    local _
    for _ in $(seq 1 3000); do
      ship_state "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(not (s["phase"] == "records" and s["acked_seq"] == s["durable_seq"] and s["lag_bytes"] == 0))' &&
        return 0
      sleep 0.1
    done
    echo "bench: the shipper of $1 did not catch up: $(ship_state "$1")" >&2
    exit 1
  }
  # volume KIND COMPRESS: a new volume written with KIND of data while the plugin ships
  # it to a log server on loopback (ship-compress=zstd, the default); prints "WRITTEN
  # JOURNAL WIRE STORED": the bytes of data written, of the volume's journal, sent by
  # the shipper for the records (frames and headers included), and of the server's
  # journal (base snapshots not counted).
  volume() {
    local kind=$1 c=$2 img=$dir/c.img journal=$dir/c.rewind bytes=$size
    rm -rf "$img" "$journal" "$dir/store"
    [ "$kind" = ext4 ] && bytes=$(stat -c %s "$dir/ext4.img")
    truncate -s "$bytes" "$img"
    "$server" --listen 127.0.0.1:0 --store "$dir/store" --tokens "$dir/tokens" \
      --insecure-loopback 2>"$dir/server.log" &
    local server_pid=$! port='' wire0 wire
    pids+=("$server_pid")
    for _ in $(seq 1 100); do
      port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$dir/server.log")
      [ -n "$port" ] && break
      sleep 0.05
    done
    serve c "$plugin" image="$img" journal="$journal" compress="$c" ship=127.0.0.1:"$port" \
      ship-token=@"$dir/token" ship-volume=vol
    shipped "$journal"  # the base snapshot
    wire0=$(ship_state "$journal" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_bytes"])')
    case "$kind" in
      random) fio_json "$dir/c.sock" --rw=write --bs=1M --iodepth=4 --refill_buffers >/dev/null ;;
      half)
        fio_json "$dir/c.sock" --rw=write --bs=1M --iodepth=4 --refill_buffers \
          --buffer_compress_percentage=50 >/dev/null
        ;;
      ext4) nbdcopy "$dir/ext4.img" "$(uri "$dir/c.sock")" ;;
    esac
    shipped "$journal"
    wire=$(ship_state "$journal" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_bytes"])')
    stop "$served_pid"
    stop "$server_pid"
    "$cli" log --json "$journal" | python3 -c '
import json, sys
segs = json.load(sys.stdin)["segments"]
print(sum(s["bytes_written"] for s in segs), sum(s["bytes"] for s in segs), end=" ")'
    echo -n "$((wire - wire0)) "
    json_of "$dir/store/vol" journal_bytes
    rm -rf "$img" "$journal" "$dir/store"
  }
  echo "Bytes per byte written: of the volume's journal, and of what its shipper sends"
  echo "(ship-compress=zstd, the default) and the log server stores, base snapshots not"
  echo "counted:"
  echo
  echo "| data | written | journal, off | journal, zstd | wire, off | wire, zstd | stored, off | stored, zstd |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  local kind off on
  for kind in random half ext4; do
    off=$(volume "$kind" off)
    on=$(volume "$kind" zstd)
    python3 - "$kind" $off $on <<'PY'
import sys
kind = {"random": "random (fio's refilled buffers)", "half": "fio buffer_compress_percentage=50",
        "ext4": "ext4 with a copy of /usr/share (mkfs.ext4 -d), nbdcopy"}[sys.argv[1]]
w, j_off, x_off, s_off, w2, j_on, x_on, s_on = map(int, sys.argv[2:])
print(f"| {kind} | {w / 2**20:,.0f} MiB | {j_off / w:.3f} | **{j_on / w2:.3f}** | "
      f"**{x_off / w:.3f}** | {x_on / w2:.3f} | {s_off / w:.3f} | {s_on / w2:.3f} |")
PY
  done
  rm -f "$dir/ext4.img"
  echo
  echo "(\"off\" and \"zstd\": the plugin's compress=; the wire carries what the shipper"
  echo "sends for the records, frames and headers included.)"
  echo
  # Speed of compress=off, compress=zstd on one thread, and compress=zstd on the
  # default threads, on 50% compressible data, as bench_io measures it.
  local jobs=(
    "randwrite-4k-qd16|--rw=randwrite --bs=4k --iodepth=16"
    "write-64k-qd4|--rw=write --bs=64k --iodepth=4"
  )
  local settings=(off zstd1 zstd)
  local round job name args c order pid t0 keys
  for round in $(seq 1 "$rounds"); do
    for job in "${jobs[@]}"; do
      name=${job%%|*} args=${job#*|}
      # Each round starts with another setting.
      order=("${settings[@]:$((round % 3))}" "${settings[@]:0:$((round % 3))}")
      for c in "${order[@]}"; do
        case "$c" in
          off) keys=(compress=off) ;;
          zstd1) keys=(compress=zstd compress-threads=1) ;;
          zstd) keys=(compress=zstd) ;;
        esac
        rm -rf "$dir/c.img" "$dir/c.rewind"
        truncate -s "$size" "$dir/c.img"
        serve c "$plugin" image="$dir/c.img" journal="$dir/c.rewind" "${keys[@]}"
        sync
        pid=$served_pid
        t0=$(cpu_ticks "$pid")
        # shellcheck disable=SC2086
        fio_json "$dir/c.sock" $args --refill_buffers --buffer_compress_percentage=50 \
          --time_based --runtime="$runtime" >"$dir/speed.$name.$c.$round.json"
        sleep 1
        echo "$(($(cpu_ticks "$pid") - t0))" >"$dir/speed.$name.$c.$round.cpu"
        stop "$pid"
      done
    done
  done
  rm -rf "$dir/c.img" "$dir/c.rewind"
  python3 - "$dir" "$rounds" "$(getconf CLK_TCK)" "$(nproc)" "${jobs[@]%%|*}" <<'PY'
import json, os, statistics, sys
d, rounds, hz, cpus, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
def figures(name, c):
    iops, bw, cpu = [], [], []
    for r in range(1, rounds + 1):
        with open(f"{d}/speed.{name}.{c}.{r}.json") as f:
            j = json.load(f)["jobs"][0]["write"]
        ticks = int(open(f"{d}/speed.{name}.{c}.{r}.cpu").read())
        iops.append(j["iops"]); bw.append(j["bw_bytes"] / 2**20); cpu.append(ticks / hz * 1e6 / j["total_ios"])
    return statistics.mean(iops), statistics.mean(bw), statistics.mean(cpu), bw
threads = min(max(cpus, 1), 4)
print(f"50% compressible data (fio buffer_compress_percentage=50), new sparse images; zstd on")
print(f"1 thread (compress-threads=1) and on {threads} (the default here):")
print()
print(f"| job | off MiB/s | zstd, 1 thread | zstd, {threads} threads | off CPU µs/op | zstd 1 CPU µs/op | zstd {threads} CPU µs/op | zstd {threads}/off | zstd 1/off |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    oi, ob, oc, _ = figures(n, "off")
    ai, ab, ac, _ = figures(n, "zstd1")
    zi, zb, zc, _ = figures(n, "zstd")
    print(f"| {n} | {ob:,.1f} | {ab:,.1f} | {zb:,.1f} | {oc:.1f} | {ac:.1f} | {zc:.1f} | **{zi / oi:.2f}x** | {ai / oi:.2f}x |")
print()
for n in names:
    runs = {c: ", ".join(f"{b:,.0f}" for b in figures(n, c)[3]) for c in ("off", "zstd1", "zstd")}
    print(f"- {n}, MiB/s round by round: off {runs['off']}; zstd 1 thread {runs['zstd1']}; zstd {threads} threads {runs['zstd']}")
print(f"- each figure is the mean of {rounds} runs of {os.environ.get('RUNTIME', '?')} s per setting, each round starting with another setting; CPU µs/op: the server process's user and system time per write, over the job and the second after it")
PY
}

# ------------------------------------------------------------------------------------
bench_bisect() {
  local img=$dir/bisect.img journal=$dir/bisect.rewind
  truncate -s 1G "$img"
  serve bisect "$plugin" image="$img" journal="$journal"
  # One million 4 KiB writes at random places, a FLUSH after every 64 (flush points).
  fio_json "$dir/bisect.sock" --size=1G --rw=randwrite --bs=4k --iodepth=16 --fsync=64 \
    --io_size=$((1000000 * 4096)) >/dev/null
  stop "$served_pid"
  local last culprit
  last=$(json_of "$journal" last_seq)
  # The check reads the point's first block through its URI and calls every point from
  # two thirds of the history on bad.
  culprit=$((last * 2 / 3))
  local t0 t1
  t0=$(date +%s%N)
  "$cli" bisect "$journal" --good seq:0 --json \
    --run "qemu-io -r -f raw -c 'read 0 4096' \"\$REWIND_URI\" >/dev/null && [ \"\$REWIND_SEQ\" -lt $culprit ]" \
    >"$dir/bisect.json" 2>"$dir/bisect.log"
  t1=$(date +%s%N)
  python3 - "$dir/bisect.json" "$last" "$culprit" "$(((t1 - t0) / 1000000))" <<'PY'
import json, math, statistics, sys
r = json.load(open(sys.argv[1]))
last, culprit, total_ms = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
secs = [s["seconds"] for s in r["steps"]]
print("| journal | points (flush points and marks) | steps | bound: ceil(log2(points + 1)) + 2 | s per step, median (min-max) | whole bisection s |")
print("|---|---:|---:|---:|---|---:|")
print(f"| {last:,} records | {r['points']:,} | {len(secs)} | {math.ceil(math.log2(r['points'] + 1)) + 2} "
      f"| {statistics.median(secs):.2f} ({min(secs):.2f}-{max(secs):.2f}) | {total_ms / 1000:.1f} |")
print()
print(f"- found: first bad seq {r['first_bad_seq']} (the first point at or after seq {culprit}), last good seq {r['last_good_seq']}")
print("- a step: nbdkit started with the plugin at that point behind the cow filter (the view opened from the segment indexes), the check run, nbdkit stopped")
PY
  rm -rf "$img" "$journal"
}

echo "# rewind benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "$(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB, $(uname -r), $(stat -f -c %T "$dir") under $dir;" \
  "fio $(fio --version | sed 's/fio-//'), nbdkit $(nbdkit --version | cut -d' ' -f2)"
echo
export RUNTIME=$runtime
case "$what" in
  io) bench_io ;;
  restore) bench_restore ;;
  view) bench_view ;;
  compress) bench_compress ;;
  bisect) bench_bisect ;;
  all)
    bench_io
    echo
    bench_restore
    echo
    bench_view
    echo
    bench_compress
    echo
    bench_bisect
    ;;
esac
