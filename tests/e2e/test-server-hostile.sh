#!/usr/bin/env bash
# rewind-server against unauthenticated peers and a revoked token:
# - 12 peers (from 127.0.0.3-5) that each announce a 60 MiB frame before any HELLO are
#   refused from the header alone, and the server's memory does not grow by their
#   frames;
# - a peer that trickles a byte every 0.3 s is disconnected by --hello-timeout, which
#   bytes do not extend;
# - with --max-per-address 4, silent peers from 127.0.0.2 take 4 slots and no more,
#   while a host on 127.0.0.1 ships its volume;
# - a read-only token's read does not write to the store (a missing index stays
#   missing);
# - a token removed from the tokens file and reloaded with SIGHUP loses its shipping
#   connection and a restore in progress at once, and its new connection is refused;
# - a restore stops soon after its client leaves, and errors name no server path;
# - quotas and hashed tokens (see below).
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io python3
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
printf 'tok vol\nro r:vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback \
  --hello-timeout 2s --idle-timeout 30s --max-per-address 4
rss() { awk '/VmRSS/ {print $2}' "/proc/$log_server_pid/status"; }
# logged PATTERN WHAT: waits up to 15 s for the server to log a line matching PATTERN
# (grep's basic regular expression), else fails saying WHAT did not happen.
logged() {
  local _
  for _ in $(seq 1 150); do
    grep -q -- "$1" log-server.log && return 0
    sleep 0.1
  done
  fail "$2: $(tail -n 20 log-server.log)"
}
before=$(rss)

python3 - "$port" >flood.out 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
def conn(address="127.0.0.2"):
    s = socket.socket()
    s.bind((address, 0))
    s.connect(("127.0.0.1", port))
    return s
# Oversized frames before a HELLO, four at a time (the per-address limit), each round
# from an address of its own (the server may not have let the last round's go yet).
header = b"RWNP" + bytes([1, 1, 0, 0]) + (60 << 20).to_bytes(4, "little") + bytes(12)
for round in range(3):
    peers = [conn(f"127.0.0.{3 + round}") for _ in range(4)]
    for s in peers:
        s.sendall(header + b"x" * 65536)
    for s in peers:
        reply = s.recv(4096)
        assert reply[:4] == b"RWNP" and reply[5] == 3, reply
        assert int.from_bytes(reply[24:26], "little") == 11, reply   # TOO_LARGE
        assert b"before a HELLO is accepted" in reply, reply
        s.close()
time.sleep(0.5)
# A trickle of bytes does not extend the HELLO's deadline (2 s).
s = conn()
start = time.time()
try:
    for b in b"RWNP" + bytes(40):
        s.sendall(bytes([b]))
        time.sleep(0.3)
except OSError:
    pass
assert time.time() - start < 6, "a trickling peer was not disconnected by the deadline"
s.close()
# Four silent peers take their address's slots; a fifth is closed at once.
held = [conn() for _ in range(4)]
time.sleep(0.2)
fifth = conn()
fifth.settimeout(2)
try:
    assert fifth.recv(1) == b"", "a fifth connection from one address was served"
except ConnectionResetError:
    pass
print("held", flush=True)
time.sleep(8)   # the legitimate host ships and reads meanwhile (below)
print("done", flush=True)
PY
flood=$!
cleanup "kill -KILL $flood"
for _ in $(seq 1 300); do
  grep -q held flood.out && break
  kill -0 "$flood" 2>/dev/null || fail "hostile peers were not held off: $(cat flood.out)"
  sleep 0.05
done
grep -q held flood.out || fail "the flood did not start: $(cat flood.out)"
after=$(rss)
[ $((after - before)) -lt 65536 ] ||
  fail "the server grew by $(((after - before) / 1024)) MiB of unauthenticated frames"
grep -q "refused, 4 connections open from 127.0.0.2 already (--max-per-address)" \
  log-server.log || fail "the per-address limit was not logged: $(cat log-server.log)"

# A legitimate host ships and reads while the flood holds its slots (its own address
# is not limited by the others').
truncate -s 4M vol.img
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind
qemu-io -f raw -t writeback -c 'write -P 7 0 1M' -c flush "$(uri_of "$workdir/vol.sock")" >/dev/null
stop_server
"$REWIND_SHIP" vol.rewind 127.0.0.1 "$port" vol tok >/dev/null || fail "shipping beside the flood"
"$REWIND_CLI" info "rewind://127.0.0.1:$port/vol" --token ro >/dev/null ||
  fail "reading beside the flood"
! grep -q done flood.out || fail "the flood ended before the host shipped and read"
wait "$flood" || fail "hostile peers were not held off: $(cat flood.out)"

# A read-only token's read writes nothing: a missing index stays missing. (The
# shipping session first ends: closing the stored volume writes its indexes.)
logged "audit: peer [0-9.:]* volume 'vol' purpose ship" "the shipping session did not end"
rm -f store/vol/segments/*.idx
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol" --token ro -o back.img >/dev/null ||
  fail "reading with the read-only token"
cmp back.img vol.img || fail "the volume read back differs"
# An error sent to a peer names no path of the server's.
rc=0
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol" --token ro --seq 999999 -o no.img 2>err ||
  rc=$?
[ "$rc" -ne 0 ] && grep -q "NO_POINT" err || fail "a point past the volume: exit $rc, $(cat err)"
if grep -qF "$workdir" err; then fail "the server's path reached the peer: $(cat err)"; fi
[ -z "$(ls store/vol/segments/ | grep "\.idx$")" ] || fail "a read-only read wrote an index: $(ls -l store/vol/segments/; cat log-server.log)"

# A restore of a large sparse volume stops soon after its client leaves, though it
# sends little: a run of zeroes goes out every 64 MiB.
truncate -s 64G sparse.img
start_server "$workdir/sparse.sock" image=sparse.img journal=sparse.rewind
stop_server
printf 'tok vol sparse\nro r:vol\n' >tokens
kill -HUP "$log_server_pid"
sleep 0.3
"$REWIND_SHIP" sparse.rewind 127.0.0.1 "$port" sparse tok >/dev/null || fail "shipping sparse"
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/sparse" --token tok -o sparse-back.img \
  >/dev/null 2>&1 &
reader=$!
sleep 1
kill -KILL "$reader"
wait "$reader" 2>/dev/null || true
left=$(date +%s)
logged "audit: peer [0-9.:]* volume 'sparse' purpose read .*closed" \
  "the restore went on after its client left"
echo "the server ended the restore $(($(date +%s) - left)) s after its client left"
# A reading session loses its rights at once too: a restore in progress is cut off
# when its token's grant is removed.
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/sparse" --token tok -o sparse-back2.img \
  >/dev/null 2>revoked-read.err &
reader=$!
sleep 1
printf 'tok vol\nro r:vol\n' >tokens
kill -HUP "$log_server_pid"
rc=0
wait "$reader" || rc=$?
[ "$rc" -ne 0 ] || fail "a restore went on after its token's grant was removed"
grep -q "volume 'sparse': the reloaded tokens no longer let its token read it" log-server.log ||
  fail "the revoked read was not logged: $(grep sparse log-server.log)"
logged "audit: peer [0-9.:]* volume 'sparse' purpose read .*: revoked" "no audit line for the revoked read"
[ ! -e sparse-back2.img ] || fail "a revoked restore left its output"
kill -HUP "$log_server_pid"
sleep 0.3

# Revocation with a connection open: the plugin's shipper holds one.
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind ship=127.0.0.1:"$port" \
  ship-token=tok ship-volume=vol
logged "shipping volume 'vol'" "the plugin's shipper did not connect"
printf 'ro r:vol\n' >tokens
kill -HUP "$log_server_pid"
logged "no longer let its token ship it; closing the connection" "the revoked token's connection was not closed"
logged "audit: peer 127.0.0.1:[0-9]* volume 'vol' purpose ship .*: revoked" "no audit line for the revoked session"
logged "the token does not grant volume 'vol'" "the revoked token's new connection was not refused"
if grep -q "tok" <(grep audit log-server.log); then fail "an audit line carries a token"; fi
stop_server

# Quotas and hashed tokens: the token file holds only the hash of `quota-tok`, which
# ships `small` with a 2 MiB quota and `free` without one. `small`'s base of 4 MiB of
# data passes its quota: refused (QUOTA), with the store holding less than the quota,
# while `free` ships whole.
printf '%s small@2M free\n' "$(echo quota-tok | "$REWIND_SERVER" --hash-token)" >tokens
grep -q "^sha256:[0-9a-f]\{64\} small@2M free$" tokens || fail "--hash-token: $(cat tokens)"
kill -HUP "$log_server_pid"
sleep 0.5
head -c 4M /dev/urandom >q.img
start_server "$workdir/q.sock" image=q.img journal=q.rewind
stop_server
rc=0
"$REWIND_SHIP" q.rewind 127.0.0.1 "$port" small quota-tok >small.out 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "QUOTA: volume 'small' takes [0-9]* bytes of the store and its quota is 2097152" \
  small.out || fail "the quota was not enforced (exit $rc): $(cat small.out)"
[ "$(du -sb --apparent-size store/small | cut -f1)" -le $((2 << 20)) ] ||
  [ "$(du -sk store/small | cut -f1)" -le 2048 ] || fail "store/small passed its quota: $(du -sk store/small)"
"$REWIND_SHIP" q.rewind 127.0.0.1 "$port" free quota-tok >/dev/null ||
  fail "the volume without a quota did not ship beside the full one"
"$REWIND_CLI" verify store/free >/dev/null || fail "store/free does not verify"
echo "PASS"
