#!/usr/bin/env bash
# Clients against a rogue server or a network in between:
# - a server that acknowledges more than it was sent (a lying ACK), or says in its
#   WELCOME that it holds records this journal never had, does not move the shipped
#   position: the manifest's shipped_seq never passes the journal's newest seq, so
#   retention keeps what the server may lack;
# - to a host that is not a loopback address (an address of a network namespace this
#   test makes, never traffic off the machine), `rewind info rewind://` and the
#   plugin's shipper use TLS even without --ca/ship-ca=: a plain-TCP listener there
#   records only a TLS ClientHello, never the token; a TLS server whose certificate
#   the system does not trust is refused; pinned with --ca it is read.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io openssl python3 ip unshare nsenter
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}" "${REWIND_ROGUE:?set by CTest}"

cd "$workdir"
printf 'tok vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback
upstream=$port

# rogue MODE N: the lying proxy in front of the server; sets rogue_port.
rogue() {
  setpriv --pdeathsig KILL "$REWIND_ROGUE" "$upstream" "$1" "$2" >"rogue-$1.out" &
  cleanup "kill -KILL $!"
  local i
  for i in $(seq 1 100); do
    rogue_port=$(sed -n 's/^listening on //p' "rogue-$1.out")
    [ -n "$rogue_port" ] && return 0
    sleep 0.05
  done
  fail "the rogue proxy did not start"
}
# shipped_within: the manifest's shipped position is at most the journal's newest seq.
shipped_within() {
  local shipped last
  shipped=$("$REWIND_CLI" info --json vol.rewind | json_field '["shipped_seq"]')
  last=$("$REWIND_CLI" info --json vol.rewind | json_field '["last_seq"]')
  [ "$shipped" = None ] || [ "$shipped" -le "$last" ] ||
    fail "$1: the shipped position moved to seq $shipped, past the journal's newest seq $last"
}
# wait_for FILE TEXT: up to 20 s.
wait_for() {
  local i
  for i in $(seq 1 200); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $1: $(cat "$1")"
}

truncate -s 4M vol.img
# A lying ACK.
rogue ack 1000000
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind ship=127.0.0.1:"$rogue_port" \
  ship-token=tok ship-volume=vol
qemu-io -f raw -t writeback -c 'write -P 1 0 64k' -c flush -c 'write -P 2 64k 64k' -c flush \
  "$(uri_of "$workdir/vol.sock")" >/dev/null
wait_for server.log "the server acknowledged seq 100000"
grep -q "acknowledged seq 100000[12], but the frames in flight hold seq [12]\.\.[12]" server.log ||
  fail "the shipper did not refuse the lying ACK: $(cat server.log)"
stop_server
shipped_within "a lying ACK"

# A lying WELCOME: the server holds the base and both records; it claims a million more.
rogue welcome 1000000
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind ship=127.0.0.1:"$rogue_port" \
  ship-token=tok ship-volume=vol
wait_for rogue-welcome.out "WELCOME seq"
wait_for server.log "beyond this journal's newest durable seq 2: it is not this volume's copy"
stop_server
shipped_within "a lying WELCOME"

# A host that is not a loopback address, inside a network namespace of this test: held
# by a process of its own, entered with nsenter (not `ip netns exec`, which remounts
# / and /sys and so fails in a chroot).
setpriv --pdeathsig KILL unshare --net sleep 1d &
ns_pid=$!
cleanup "kill -KILL $ns_pid"
for _ in $(seq 1 100); do
  [ "$(readlink "/proc/$ns_pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
  sleep 0.05
done
[ "$(readlink "/proc/$ns_pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] ||
  fail "unshare --net made no network namespace"
in_ns() { nsenter --target "$ns_pid" --net "$@"; }
in_ns ip link set lo up
in_ns ip addr add 10.200.0.1/32 dev lo
# A plain-TCP listener that records every byte it receives, on 10.200.0.1:7420.
in_ns setpriv --pdeathsig KILL python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.200.0.1", 7420)); s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(3)
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            with open(sys.argv[1], "ab") as f: f.write(b)
    except OSError: pass
    c.close()
' "$workdir/recorded" >recorder.out &
cleanup "kill -KILL $!"
wait_for recorder.out listening

secret=SeCrEt-$RANDOM$RANDOM
rc=0
in_ns "$REWIND_CLI" info rewind://10.200.0.1:7420/vol --token "$secret" 2>err || rc=$?
[ "$rc" -ne 0 ] || fail "rewind info read from a plain-TCP listener on 10.200.0.1"
grep -qF "the TLS handshake failed" err && grep -qF "10.200.0.1 is not a loopback address" err ||
  fail "rewind info to 10.200.0.1 without --ca: $(cat err)"
printf '%s\n' "$secret" >token
chmod 600 token
cp vol.img ns.img
in_ns setpriv --pdeathsig KILL nbdkit -f -U "$workdir/ns.sock" "$REWIND_PLUGIN" image=ns.img \
  journal=ns.rewind ship=10.200.0.1:7420 ship-token=@"$workdir/token" ship-volume=vol \
  2>ns-server.log &
cleanup "kill -KILL $!"
wait_for ns-server.log "the TLS handshake failed"
[ -s recorded ] || fail "nothing reached the listener on 10.200.0.1"
[ "$(head -c 1 recorded | od -An -tx1 | tr -d ' ')" = 16 ] ||
  fail "what reached 10.200.0.1 is not a TLS handshake record"
if grep -qaF -- "$secret" recorded; then fail "the token reached 10.200.0.1 in clear"; fi

# A TLS server at 10.200.0.1: untrusted by the system, refused; pinned with --ca, read.
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 \
  -subj /CN=10.200.0.1 -addext "subjectAltName=IP:10.200.0.1" 2>/dev/null
in_ns setpriv --pdeathsig KILL "$REWIND_SERVER" --listen 10.200.0.1:7421 --store "$workdir/store" \
  --tokens tokens --tls-cert cert.pem --tls-key key.pem 2>tls-server.log &
cleanup "kill -KILL $!"
wait_for tls-server.log "listening on"
rc=0
in_ns "$REWIND_CLI" info rewind://10.200.0.1:7421/vol --token tok 2>err || rc=$?
[ "$rc" -ne 0 ] && grep -qF "certificate verify failed" err ||
  fail "a server the system does not trust was read (exit $rc): $(cat err)"
in_ns "$REWIND_CLI" info rewind://10.200.0.1:7421/vol --token tok --ca cert.pem >info.txt ||
  fail "reading with the CA pinned failed"
grep -q "seq" info.txt || fail "no report from 10.200.0.1: $(cat info.txt)"
echo "PASS"
