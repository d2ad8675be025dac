#!/usr/bin/env bash
# rewind-server with real TLS (a self-signed certificate made with openssl) and the
# shipping client: two volumes, two tokens; a token cannot ship a volume it was not
# granted (or was granted read-only); a plain-TCP client is refused by the TLS server;
# malformed frames and a stalled peer are refused without harming a shipment going on;
# the server killed mid-shipment resumes from what it acknowledged; SIGHUP reloads the
# tokens. Every volume in the store then restores as the original and passes verify.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io openssl python3
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost" 2>/dev/null
printf 'tok-a vol-a r:vol-b\ntok-b vol-b\n' >tokens
chmod 600 tokens
mkdir store

# Two local volumes, written by qemu-io through the plugin, with marks.
make_volume() {
  local name=$1 mib=$2 i
  truncate -s 16M "$name.img"
  start_server "$workdir/$name.sock" image="$name.img" journal="$name.rewind" segment-size=1M
  for i in $(seq 1 "$mib"); do
    qemu-io -f raw -t writeback -c "write -P $i $(((i * 7) % 15))M 1M" -c flush \
      "$(uri_of "$workdir/$name.sock")" >/dev/null
    [ $((i % 4)) -eq 0 ] && "$REWIND_CLI" mark "$name.rewind" "m$i" >/dev/null
  done
  stop_server
}
make_volume a 12
make_volume b 40

# serve: starts a server of this test (TLS, any free port); sets server_pid and $port.
serve() {
  start_log_server 127.0.0.1:0 --store store --tokens tokens --tls-cert cert.pem \
    --tls-key key.pem --idle-timeout 2s --hello-timeout 2s
  server_pid=$log_server_pid
}
ship() { "$REWIND_SHIP" "$1.rewind" localhost "$port" "$2" "$3" ${4-cert.pem}; }
expect_refused() {
  local want=$1 out rc=0
  shift
  out=$(ship "$@" 2>&1) || rc=$?
  [ "$rc" -eq 1 ] && echo "$out" | grep -q "$want" || fail "ship $*: expected '$want', got: $out"
}
same_volume() {  # LOCAL VOLUME: every mark and the newest state restore alike
  local seq
  "$REWIND_CLI" verify "store/$2" >/dev/null || fail "verify of the store's $2"
  for seq in $(seq 0 5 "$("$REWIND_CLI" info --json "$1.rewind" | json_field '["last_seq"]')"); do
    "$REWIND_CLI" restore "$1.rewind" --seq "$seq" -o l.img >/dev/null
    "$REWIND_CLI" restore "store/$2" --seq "$seq" -o s.img >/dev/null
    cmp -s l.img s.img || fail "$2 at seq $seq differs in the store"
    rm -f l.img s.img
  done
  "$REWIND_CLI" restore "store/$2" --mark m4 -o s.img >/dev/null
  "$REWIND_CLI" restore "$1.rewind" --mark m4 -o l.img >/dev/null
  cmp -s l.img s.img || fail "$2 at mark m4 differs in the store"
  rm -f l.img s.img
}

serve
ship a vol-a tok-a | grep -q "^acked seq $("$REWIND_CLI" info --json a.rewind | json_field '["last_seq"]') " ||
  fail "vol-a was not acknowledged whole"
same_volume a vol-a
expect_refused "READ_ONLY: the token grants reading volume 'vol-b' only" b vol-b tok-a
expect_refused "UNAUTHORIZED: the token does not grant volume 'vol-c'" b vol-c tok-a
expect_refused "UNAUTHORIZED" b vol-b wrong-token
[ ! -e store/vol-c ] || fail "a refused volume was created in the store"
# A plain-TCP client is refused by the TLS server.
expect_refused "" b vol-b tok-b ""

# Hostile peers while vol-b ships: garbage after the TLS handshake gets an ERROR, a
# silent peer is disconnected after the idle timeout; the shipment is unharmed.
hostile() {
  python3 - "$port" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile="cert.pem")
def conn():
    return ctx.wrap_socket(socket.create_connection(("localhost", int(sys.argv[1]))),
                           server_hostname="localhost")
s = conn()
s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 64)
reply = s.recv(4096)
assert reply[:4] == b"RWNP" and reply[5] == 3, reply          # an ERROR frame
assert b"bad magic" in reply, reply
assert int.from_bytes(reply[24:26], "little") == 1, reply      # MALFORMED
# A frame header announcing 4 GiB of payload: refused from the header alone, TOO_LARGE.
s3 = conn()
s3.sendall(b"RWNP" + bytes([1, 1, 0, 0]) + b"\xff\xff\xff\xff" + bytes(12))
reply = s3.recv(4096)
assert reply[:4] == b"RWNP" and reply[5] == 3, reply
assert int.from_bytes(reply[24:26], "little") == 11, reply     # TOO_LARGE
assert b"over the limit" in reply, reply
s2 = conn()
start = time.time()
assert s2.recv(1) == b"", "a silent peer was not disconnected"
assert time.time() - start < 10
print("hostile peers refused")
PY
}
ship b vol-b tok-b >ship-b.out 2>&1 &
ship_pid=$!
hostile | grep -q "hostile peers refused" || fail "hostile peers were not refused"
wait "$ship_pid" || fail "vol-b did not ship beside hostile peers: $(cat ship-b.out)"
same_volume b vol-b

# Killed mid-shipment: vol-b2 (the same journal under another name) ships partly, the
# server is killed, and a new one resumes from what the old one acknowledged.
printf 'tok-a vol-a r:vol-b\ntok-b vol-b vol-b2\n' >tokens
kill -HUP "$server_pid"
sleep 0.5
ship b vol-b2 tok-b >ship-b2.out 2>&1 &
ship_pid=$!
for _ in $(seq 1 200); do
  [ -n "$(ls store/vol-b2/segments 2>/dev/null)" ] && break
  sleep 0.02
done
kill -KILL "$server_pid"
wait "$ship_pid" && fail "the shipment outlived the server"
serve
out=$(ship b vol-b2 tok-b 2>&1) || fail "vol-b2 did not resume: $out; $(cat "$workdir/log-server.log")"
same_volume b vol-b2
echo "PASS: ship"
