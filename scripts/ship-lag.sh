#!/usr/bin/env bash
# Journal shipping figures (docs/PERFORMANCE.md holds a run): a served volume ships to
# rewind-server on loopback (TLS) while fio writes to it at a steady rate through the
# nbd engine (random 64k writes, a flush every 16). The plugin's lag is sampled from
# its control socket every 0.25 s. Printed as a markdown table, for: no rate cap; a cap
# above the write rate; a cap below it (the lag then grows for as long as the load
# lasts, and the plugin keeps the segments the server lacks). Also the bytes on the
# wire per byte written, after the base snapshot; and, without a cap, the same for
# data that compresses to about half (fio's buffer_compress_percentage=50) with
# ship-compress=off and =zstd, and for sealed copies (ship-key=).
#
#   scripts/ship-lag.sh [--rate MIB/S] [--runtime SECONDS] [--size SIZE]
#
# Installs what is missing (fio among it) and builds build/ first. Works in
# $BENCH_DIR (default /var/tmp/rewind-ship-bench). About 5 minutes with the defaults:
# the base snapshot goes first, at the rate cap too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rate=20 runtime=20 size=256M
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift ;;
    --runtime) runtime=$2; shift ;;
    --size) size=$2; shift ;;
    *) echo "ship-lag: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
scripts/install-deps.sh --bench >/dev/null
BUILD_DIR=build scripts/build.sh >/dev/null
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
cli=$root/build/cli/rewind
server=$root/build/ship/rewind-server

dir=${BENCH_DIR:-/var/tmp/rewind-ship-bench}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost" 2>/dev/null
echo "tok v" >tokens
chmod 600 tokens
"$cli" keygen ship.key >/dev/null
mkdir store
"$server" --listen 127.0.0.1:0 --store store --tokens tokens --tls-cert cert.pem \
  --tls-key key.pem 2>server.log &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" server.log && break; sleep 0.05; done
port=$(sed -n "s/.*listening on [^ ]*:\([0-9]*\).*/\1/p" server.log)

status() {  # the plugin's shipper state, one JSON object
  "$cli" info --json v.rewind 2>/dev/null |
    python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['ship']))" 2>/dev/null ||
    echo '{"phase":"none","acked_seq":0,"durable_seq":1,"lag_bytes":0,"lag_seconds":0,"wire_bytes":0}'
}

# run LABEL DATA [KEY=VALUE...]: one volume, shipped with the plugin keys given, under
# the fio load of DATA (random: fio's refilled buffers; half: compressible to about
# half); prints a row.
run() {
  local label=$1 data=$2
  shift 2
  local compressible=()
  [ "$data" = half ] && compressible=(--buffer_compress_percentage=50)
  rm -rf store/v v.rewind v.img v.sock samples
  truncate -s "$size" v.img
  nbdkit -f -U v.sock "$plugin" image=v.img journal=v.rewind ship=localhost:$port ship-token=tok \
    ship-volume=v ship-ca=cert.pem "$@" 2>plugin.log &
  local nbd=$!
  pids+=("$nbd")
  for _ in $(seq 1 200); do nbdinfo --size "nbd+unix:///?socket=v.sock" >/dev/null 2>&1 && break; sleep 0.05; done
  # The base snapshot first, so that the figures are of the records alone.
  for _ in $(seq 1 1200); do
    [ "$(status | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["phase"] == "records" and s["acked_seq"] == s["durable_seq"])')" = True ] && break
    sleep 0.1
  done
  local wire0
  wire0=$(status | python3 -c 'import json,sys; print(json.load(sys.stdin)["wire_bytes"])')
  ( while :; do echo "$(date +%s.%N) $(status)"; sleep 0.25; done ) >samples &
  local sampler=$!
  local written
  written=$(fio --name=load --ioengine=nbd --uri="nbd+unix:///?socket=v.sock" --size="$size" \
    --rw=randwrite --bs=64k --iodepth=4 --rate="${rate}m" --fsync=16 --time_based \
    --runtime="$runtime" --randrepeat=0 --refill_buffers "${compressible[@]}" \
    --output-format=json | sed -n '/^{/,$p' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["io_bytes"])')
  local load_end
  load_end=$(date +%s.%N)
  # Until the server holds everything.
  for _ in $(seq 1 3000); do
    [ "$(status | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["phase"] == "records" and s["acked_seq"] == s["durable_seq"] and s["lag_bytes"] == 0)')" = True ] && break
    sleep 0.1
  done
  local drained
  drained=$(date +%s.%N)
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  local final
  final=$(status)
  kill -TERM "$nbd"
  wait "$nbd" 2>/dev/null || true
  python3 - "$label" "$data" "$written" "$wire0" "$final" "$load_end" "$drained" samples <<'PY'
import json, sys
label, data, written, wire0, final, load_end, drained, path = sys.argv[1:]
data = {"random": "random", "half": "50% compressible"}[data]
written, wire0 = int(written), int(wire0)
final = json.loads(final)
lags, lagb = [], []
for line in open(path):
    t, s = line.split(" ", 1)
    s = json.loads(s)
    lags.append(s["lag_seconds"])
    lagb.append(s["lag_bytes"])
lags.sort()
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else 0
wire = final["wire_bytes"] - wire0
print(f"| {label} | {data} | {written / 2**20:.0f} MiB | {pick(0.5):.2f} s | {pick(0.95):.2f} s | "
      f"{max(lags, default=0):.2f} s | {max(lagb, default=0) / 2**20:.1f} MiB | "
      f"{float(drained) - float(load_end):.1f} s | {wire / written:.3f} | {final['backoffs']} |")
PY
}

echo "Shipping lag: fio writes 64 KiB blocks at random offsets, ${rate} MiB/s for ${runtime} s (flush every 16),"
echo "to rewind-server over TLS on loopback; $(nproc) CPUs, $(uname -r)."
echo
echo "| shipped with | data | written | lag p50 | lag p95 | lag max | behind max | drain after load | wire / written | back-offs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
run "no cap" random
run "ship-rate=$((rate * 2))M" random ship-rate=$((rate * 2))M
run "ship-rate=$((rate / 2))M" random ship-rate=$((rate / 2))M
run "ship-compress=off" half ship-compress=off
run "ship-compress=zstd (the default)" half
run "ship-key=, ship-compress=zstd" half ship-key=@ship.key
run "ship-key=, ship-compress=zstd" random ship-key=@ship.key
