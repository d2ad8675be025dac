#!/usr/bin/env bash
# Two plugins (two volumes, two tokens) ship to one rewind-server over TLS while
# qemu-io writes to them in phases, each phase ending in a flush and a mark whose
# state is captured with nbdcopy. One plugin's link is capped at 2 MiB/s. The server
# is killed in the middle of the run: the plugins go on taking writes, report the lag,
# and catch up once a new server listens on the same port. Afterwards every mark, a
# time and the newest state restore from the server (rewind://) equal to the
# captures; a token cannot read the other volume; `rewind verify` passes on the store;
# the local manifests hold the shipped position.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy openssl python3
: "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost" 2>/dev/null
printf 'tok-a vol-a\ntok-b vol-b\n' >tokens
chmod 600 tokens
mkdir store
rate=$((2 << 20))

log_server() {
  start_log_server "127.0.0.1:$1" --store store --tokens tokens --tls-cert cert.pem \
    --tls-key key.pem --idle-timeout 20s
}
log_server 0
ship_keys() {
  echo ship=localhost:$port ship-token=tok-$1 ship-volume=vol-$1 ship-ca=cert.pem
}
# Images with data and holes: the base snapshot goes as BASE_DATA and BASE_ZERO.
truncate -s 16M a.img b.img
for v in a b; do
  dd if=/dev/urandom of=$v.img bs=1M count=3 seek=5 conv=notrunc status=none
done
start_server "$workdir/a.sock" image=a.img journal=a.rewind segment-size=1M $(ship_keys a)
pid_a=$server_pid
# vol-a ships compressed (ship-compress=zstd, the default); vol-b as the journal
# stores it, so that its bytes on the wire are the ones the rate cap paces.
start_server "$workdir/b.sock" image=b.img journal=b.rewind segment-size=1M $(ship_keys b) \
  ship-rate=$rate ship-compress=off
pid_b=$server_pid

status() { "$REWIND_CLI" info --json "$1.rewind" | json_field "$2"; }
caught_up() {  # VOL: the server holds every durable record of VOL
  [ "$(status "$1" '["ship"]["connected"]')" = True ] &&
    [ "$(status "$1" '["ship"]["acked_seq"]')" = "$(status "$1" '["ship"]["durable_seq"]')" ] &&
    [ "$(status "$1" '["ship"]["lag_bytes"]')" = 0 ]
}
wait_caught_up() {
  local i
  for i in $(seq 1 600); do
    caught_up "$1" && return 0
    sleep 0.1
  done
  fail "vol-$1 did not catch up: $("$REWIND_CLI" info "$1.rewind"); $(cat "$workdir/log-server.log")"
}

# phase N: random writes to both volumes, a flush, a mark mN and its captured state.
phase() {
  local v i
  for v in a b; do
    for i in $(seq 1 8); do
      qemu-io -f raw -t writeback -c "write -P $((RANDOM % 250 + 1)) $((RANDOM % 15))M 256k" \
        -c "write -P $((RANDOM % 250 + 1)) $((RANDOM % 4000 * 4))k 64k" -c flush \
        "$(uri_of "$workdir/$v.sock")" >/dev/null
    done
    "$REWIND_CLI" mark "$v.rewind" "m$1" >/dev/null
    nbdcopy "$(uri_of "$workdir/$v.sock")" "$v-m$1.img"
  done
  date -u +%Y-%m-%dT%H:%M:%S.%NZ >"time-m$1"
  sleep 0.05
}

started=$(date +%s.%N)
phase 1
phase 2
wait_caught_up a
# The server is killed: writes go on, and the plugins say how far behind it is.
kill -KILL "$log_server_pid"
wait "$log_server_pid" 2>/dev/null || true
phase 3
phase 4
sleep 1.5
[ "$(status a '["ship"]["connected"]')" = False ] || fail "vol-a's shipper still says it is connected"
[ "$(status a '["ship"]["lag_bytes"]')" -gt 0 ] || fail "vol-a shows no lag with the server gone"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)" \
  "$(status a '["ship"]["lag_seconds"]')" || fail "vol-a shows no lag in seconds"
"$REWIND_CLI" info a.rewind | grep -q "^shipping    to localhost:$port/vol-a: not connected" ||
  fail "rewind info does not show the lag: $("$REWIND_CLI" info a.rewind)"
log_server "$port"
phase 5
wait_caught_up a
wait_caught_up b
elapsed=$(python3 -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$started")

# The cap held: vol-b's bytes on the wire took at least (bytes / rate) to go, less
# one burst.
wire_b=$(status b '["ship"]["wire_bytes"]')
python3 -c "
import sys
wire, rate, elapsed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sys.exit(0 if elapsed >= (wire - max(1 << 20, rate / 4)) / rate else 1)" "$wire_b" "$rate" "$elapsed" ||
  fail "vol-b sent $wire_b bytes in ${elapsed}s, faster than ship-rate=$rate allows"
# (Enough bytes that the cap, not the load, set the pace: the phases write 12.5 MiB.)
[ "$wire_b" -gt $((4 * rate)) ] || fail "vol-b sent only $wire_b bytes"

# Restores from the server equal the captures: every mark, a time, the newest state.
remote() {
  "$REWIND_CLI" restore "rewind://localhost:$port/vol-$1" --token "tok-$1" --ca cert.pem \
    "${@:2}" -o r.img >restore.out || fail "restore of vol-$1 ${*:2}: $(cat restore.out)"
}
for v in a b; do
  for n in 1 2 3 4 5; do
    remote "$v" --mark "m$n"
    cmp -s r.img "$v-m$n.img" || fail "vol-$v at mark m$n differs from its capture"
    rm r.img
  done
  remote "$v" --at "$(cat time-m3)"
  cmp -s r.img "$v-m3.img" || fail "vol-$v at $(cat time-m3) differs from the capture of m3"
  rm r.img
  remote "$v"
  cmp -s r.img "$v-m5.img" || fail "vol-$v's newest state differs from the capture of m5"
  rm r.img
done
REWIND_TOKEN=tok-a "$REWIND_CLI" info "rewind://localhost:$port/vol-a" --ca cert.pem |
  grep -q "^restorable  seq 0 " || fail "rewind info over rewind:// did not show vol-a"
REWIND_TOKEN=tok-a "$REWIND_CLI" log "rewind://localhost:$port/vol-a" --ca cert.pem |
  grep -q "^mark m5 " || fail "rewind log over rewind:// did not list mark m5"
# A token reads only its own volumes.
expect_cli 1 "UNAUTHORIZED: the token does not grant volume 'vol-b'" restore \
  "rewind://localhost:$port/vol-b" --token tok-a --ca cert.pem -o r.img
expect_cli 1 "NO_POINT" restore "rewind://localhost:$port/vol-a" --token tok-a --ca cert.pem \
  --mark no-such-mark -o r.img
[ ! -e r.img ] || fail "a refused restore left r.img"

server_pid=$pid_a stop_server
server_pid=$pid_b stop_server
for v in a b; do
  "$REWIND_CLI" verify "store/vol-$v" >/dev/null || fail "verify of the store's vol-$v"
  last=$("$REWIND_CLI" info --json "$v.rewind" | json_field '["last_seq"]')
  [ "$("$REWIND_CLI" info --json "$v.rewind" | json_field '["shipped_seq"]')" = "$last" ] ||
    fail "$v.rewind's manifest does not hold the shipped position $last"
done
echo "PASS: ship-live"
