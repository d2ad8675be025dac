#!/usr/bin/env bash
# Object-storage figures (docs/PERFORMANCE.md holds a run), against a real S3 server: a
# single-node Ceph with RADOS Gateway on loopback (tests/support/ceph.sh, memstore).
#
#  1. Shipping lag to the bucket while fio writes at a steady rate through the nbd
#     engine (random 64k writes, a flush every 16): p50/p95/max sampled every 0.25 s;
#     requests and bytes sent per GiB written; bytes stored per byte written (with
#     segment-size=64M, so that segments are sealed and replace their tail pieces).
#  2. Requests per hour at idle, counted over --idle seconds.
#  3. Restore of a volume of --restore-size random data from the bucket (rewind restore
#     s3://), against downloading the same bytes with `s3cmd get`, alternating, --rounds
#     times (the gateway's own rate varies from run to run).
#  4. Time to open the point-in-time export from the bucket (nbdkit start to the first
#     read answered) and to read it whole with nbdcopy.
#  5. The load of 1 shipped through rewind-server --store s3:// instead: the lag, the
#     requests per GiB the server sent (its session's count) and the bytes stored; and
#     the requests of a session that stays idle for --idle seconds.
#
#   scripts/bench-s3.sh [--rate MIB/S] [--runtime SECONDS] [--idle SECONDS]
#                       [--restore-size SIZE] [--rounds N]
#
# Installs what is missing (fio, Ceph) and builds build/ first. Works in $BENCH_DIR
# (default /var/tmp/rb3: short, for the daemons' sockets). About 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rate=8 runtime=30 idle=60 restore_size=1G rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift ;;
    --runtime) runtime=$2; shift ;;
    --idle) idle=$2; shift ;;
    --restore-size) restore_size=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "bench-s3: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
scripts/install-deps.sh --bench >/dev/null
scripts/install-deps.sh --test >/dev/null
BUILD_DIR=build scripts/build.sh >/dev/null
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
cli=$root/build/cli/rewind

dir=${BENCH_DIR:-/var/tmp/rb3}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  "$root/tests/support/ceph.sh" stop "$dir/c" >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
"$root/tests/support/ceph.sh" start "$dir/c" >ceph.log 2>&1 || { cat ceph.log >&2; exit 1; }
source c/env
host=${AWS_ENDPOINT_URL#http://}
s3() {
  s3cmd -c /dev/null --no-ssl --host="$host" --host-bucket="$host" --region="$AWS_REGION" \
    --access_key="$AWS_ACCESS_KEY_ID" --secret_key="$AWS_SECRET_ACCESS_KEY" "$@"
}
s3 mb s3://bench >/dev/null
status() {  # the plugin's shipper state, one JSON object
  "$cli" info --json "$1" 2>/dev/null |
    python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['ship']))" 2>/dev/null ||
    echo '{"phase":"none","acked_seq":0,"durable_seq":1,"lag_bytes":0,"lag_seconds":0,"wire_bytes":0,"requests":0}'
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
caught_up() {
  [ "$(status "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["phase"] == "records" and s["acked_seq"] == s["durable_seq"] and s["lag_bytes"] == 0)')" = True ]
}
wait_caught_up() { for _ in $(seq 1 3000); do caught_up "$1" && return 0; sleep 0.1; done; return 1; }
start() {  # SOCK KEY=VALUE...: the plugin in the background
  local sock=$1
  shift
  rm -f "$sock"
  nbdkit -f -U "$sock" "$plugin" "$@" 2>>plugin.log &
  pids+=($!)
  last_pid=$!
  for _ in $(seq 1 600); do nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "bench-s3: the plugin did not start: $(cat plugin.log)" >&2
  exit 1
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }
bucket_bytes() { s3 du "$1/" | awk '{print $1}'; }
# steady_load NAME SAMPLES: fio's steady random 64k writes (--rate, --runtime) to the
# plugin on NAME.sock, its shipper's status sampled into SAMPLES every 0.25 s, until the
# shipped position caught up after; sets `written` to the bytes written.
steady_load() {
  local name=$1 samples=$2 sampler
  ( while :; do echo "$(status "$name.rewind")"; sleep 0.25; done ) >"$samples" &
  sampler=$!
  pids+=("$sampler")
  written=$(fio --name=load --ioengine=nbd --uri="nbd+unix:///?socket=$name.sock" --size=1G \
    --rw=randwrite --bs=64k --iodepth=4 --rate="${rate}m" --fsync=16 --time_based \
    --runtime="$runtime" --randrepeat=0 --output-format=json | sed -n '/^{/,$p' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["io_bytes"])')
  wait_caught_up "$name.rewind"
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
}

echo "Object storage: RADOS Gateway $(radosgw --version | awk '{print $3}') (memstore OSD) on"
echo "loopback; $(nproc) CPUs, $(uname -r); fio $(fio --version | sed 's/fio-//')."
echo

# --- 1 and 2: lag under a steady load, requests, bytes; then idle. ---
truncate -s 1G lag.img
start lag.sock image=lag.img journal=lag.rewind segment-size=64M ship=s3://bench/lag
lag_pid=$last_pid
wait_caught_up lag.rewind
req0=$(status lag.rewind | field '["requests"]')
wire0=$(status lag.rewind | field '["wire_bytes"]')
steady_load lag samples
final=$(status lag.rewind)
journal=$("$cli" info --json lag.rewind | field '["journal_bytes"]')
stored=$(bucket_bytes s3://bench/lag)
base_stored=$(s3 du s3://bench/lag/base/ | awk '{print $1}')
# Idle: nothing written, requests counted.
idle0=$(status lag.rewind | field '["requests"]')
sleep "$idle"
idle1=$(status lag.rewind | field '["requests"]')
stop "$lag_pid"
python3 - "$written" "$req0" "$wire0" "$final" "$journal" "$stored" "$base_stored" \
  "$idle0" "$idle1" "$idle" "$rate" "$runtime" samples <<'PY'
import json, sys
(written, req0, wire0, final, journal, stored, base_stored, idle0, idle1, idle, rate,
 runtime, path) = sys.argv[1:]
written, req0, wire0 = int(written), int(req0), int(wire0)
final = json.loads(final)
lags = sorted(json.loads(line)["lag_seconds"] for line in open(path))
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else 0
gib = written / 2**30
print(f"Shipping to the bucket under fio random 64k writes at {rate} MiB/s for {runtime} s "
      "(flush every 16):")
print()
print("| written | lag p50 | lag p95 | lag max | requests per GiB written | sent / written "
      "| stored / written (records) | requests per hour idle |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {written / 2**20:.0f} MiB | {pick(0.5):.2f} s | {pick(0.95):.2f} s | "
      f"{max(lags, default=0):.2f} s | {(final['requests'] - req0) / gib:.0f} | "
      f"{(final['wire_bytes'] - wire0) / written:.2f} | "
      f"{(int(stored) - int(base_stored)) / written:.2f} | "
      f"{(int(idle1) - int(idle0)) * 3600 / int(idle):.0f} |")
print()
print(f"(The local journal holds {int(journal) / written:.2f} bytes per byte written; "
      "the sealed segments are sent whole after their tail pieces.)")
print()
PY

# --- 3: restore from the bucket against s3cmd get of the same bytes. ---
truncate -s "$restore_size" big.img
dd if=/dev/urandom of=big.img bs=4M count=$(($(stat -c %s big.img) / (4 << 20))) conv=notrunc \
  status=none
start big.sock image=big.img journal=big.rewind ship=s3://bench/big
big_pid=$last_pid
wait_caught_up big.rewind
qemu-io -f raw -c "write -P 7 0 1M" -c flush "nbd+unix:///?socket=big.sock" >/dev/null
"$cli" mark big.rewind bench >/dev/null
wait_caught_up big.rewind
stop "$big_pid"
: >rounds
for _ in $(seq 1 "$rounds"); do
  sync
  echo 3 >/proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  mkdir got
  s3 get --recursive s3://bench/big/base/ got/ >/dev/null
  t1=$(date +%s.%N)
  got=$(du -sb got | awk '{print $1}')
  rm -rf got
  sync
  echo 3 >/proc/sys/vm/drop_caches
  t2=$(date +%s.%N)
  "$cli" restore s3://bench/big --mark bench -o restored.img >restore.out
  t3=$(date +%s.%N)
  cmp -s <(dd if=restored.img bs=1M skip=1 status=none) <(dd if=big.img bs=1M skip=1 status=none) ||
    { echo "bench-s3: the restore differs from the image" >&2; exit 1; }
  rm -f restored.img
  echo "$t0 $t1 $t2 $t3" >>rounds
done

# --- 4: the point-in-time export from the bucket. ---
t4=$(date +%s.%N)
start view.sock journal=s3://bench/big mark=bench cache-size=256M
view_pid=$last_pid
t5=$(date +%s.%N)
nbdcopy "nbd+unix:///?socket=view.sock" null: 2>/dev/null || nbdcopy "nbd+unix:///?socket=view.sock" /dev/null
t6=$(date +%s.%N)
stop "$view_pid"
python3 - "$restore_size" "$got" "$t4" "$t5" "$t6" <<'PY'
import statistics, sys
size, got = sys.argv[1], int(sys.argv[2])
t = [0, 0, 0, 0] + [float(x) for x in sys.argv[3:]]
mib = got / 2**20
print(f"Restore of a {size} volume of random data from the bucket, against `s3cmd get "
      f"--recursive` of its base chunks ({mib:.0f} MiB, the same bytes), alternating, page "
      "cache dropped before each:")
print()
print("| round | s3cmd get | rewind restore s3:// | ratio |")
print("|---|---:|---:|---:|")
ratios = []
for n, line in enumerate(open("rounds"), 1):
    t0, t1, t2, t3 = map(float, line.split())
    s3cmd, restore = t1 - t0, t3 - t2
    ratios.append(s3cmd / restore)
    print(f"| {n} | {mib / s3cmd:.0f} MiB/s | {mib / restore:.0f} MiB/s | {ratios[-1]:.2f} |")
print(f"| median | | | {statistics.median(ratios):.2f} |")
print()
print(f"Point-in-time export from the bucket (cache-size=256M): open {t[5] - t[4]:.2f} s "
      f"(nbdkit start to the first read answered), whole volume read with nbdcopy "
      f"{t[6] - t[5]:.1f} s ({mib / (t[6] - t[5]):.0f} MiB/s).")
PY

# --- 5: the load of 1 through a log server whose store is the bucket. ---
printf 'tok lag\n' >tokens
chmod 600 tokens
"$root/build/ship/rewind-server" --listen 127.0.0.1:0 --store s3://bench/servers --cache \
  "$dir/server-cache" --tokens tokens --insecure-loopback 2>server.log &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' server.log && break; sleep 0.1; done
server_port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' server.log | tail -n 1)
[ -n "$server_port" ] || { echo "bench-s3: rewind-server did not start: $(cat server.log)" >&2; exit 1; }
session_requests() {  # the requests the server's last session of volume 'lag' sent
  for _ in $(seq 1 100); do
    local n
    n=$(sed -n "s/.*volume 'lag': \([0-9]*\) requests to .*/\1/p" server.log | tail -n 1)
    [ "$(grep -c "volume 'lag': [0-9]* requests" server.log)" -gt "$1" ] && { echo "$n"; return; }
    sleep 0.1
  done
  echo "bench-s3: the server did not end the session: $(cat server.log)" >&2
  exit 1
}
truncate -s 1G srv.img
srv_keys=(image=srv.img journal=srv.rewind segment-size=64M "ship=127.0.0.1:$server_port"
  ship-token=tok ship-volume=lag)
start srv.sock "${srv_keys[@]}"
srv_pid=$last_pid
wait_caught_up srv.rewind
steady_load srv server-samples
stop "$srv_pid"
load_requests=$(session_requests 0)
stored=$(bucket_bytes s3://bench/servers/lag)
base_stored=$(s3 du s3://bench/servers/lag/base/ | awk '{print $1}')
# An idle session: the plugin started again, nothing written.
start srv.sock "${srv_keys[@]}"
srv_pid=$last_pid
wait_caught_up srv.rewind
sleep "$idle"
stop "$srv_pid"
idle_requests=$(session_requests 1)
python3 - "$written" "$load_requests" "$stored" "$base_stored" "$idle_requests" "$idle" \
  server-samples <<'PY'
import json, sys
written, load, stored, base_stored, idle_req, idle, path = sys.argv[1:]
written = int(written)
lags = sorted(json.loads(line)["lag_seconds"] for line in open(path))
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else 0
print()
print("The same load shipped to rewind-server --store s3:// (the server acknowledges once the "
      "bucket holds the records; lag as the plugin sees it):")
print()
print("| written | lag p50 | lag p95 | lag max | requests per GiB written (session) "
      "| stored / written (records) | requests in an idle session |")
print("|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {written / 2**20:.0f} MiB | {pick(0.5):.2f} s | {pick(0.95):.2f} s | "
      f"{max(lags, default=0):.2f} s | {int(load) / (written / 2**30):.0f} | "
      f"{(int(stored) - int(base_stored)) / written:.2f} | {idle_req} in {idle} s |")
PY
