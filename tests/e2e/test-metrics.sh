#!/usr/bin/env bash
# The plugin's metrics= and rewind-server --metrics under a real load: fio writes to a
# volume that ships to the server, and both endpoints are scraped and checked by
# Prometheus' own promtool. The counters follow the load: the bytes written equal what
# fio wrote (within 1%), flushes and their latency are counted, the server holds the
# volume's last seq. With the server stopped the lag rises, scrape after scrape, and
# falls to 0 once it is back. The endpoints answer nothing but GET /metrics, expose no
# path or token, and bad metrics= values and a port in use are refused at start. The
# alert rules of dist/prometheus pass promtool's check and their own test.
source "$(dirname "$0")/functions.sh"
requires nbdkit fio promtool python3
: "${REWIND_SERVER:?set by CTest}"
rules=$(cd "$(dirname "$0")/../../dist/prometheus" && pwd)

cd "$workdir"
# The alert rules: valid, and each fires on the series its test gives (and not before).
promtool check rules "$rules/rewind-alerts.yml" >promtool.out 2>&1 ||
  fail "promtool check rules: $(cat promtool.out)"
(cd "$rules" && promtool test rules rewind-alerts.test.yml) >promtool.out 2>&1 ||
  fail "promtool test rules: $(cat promtool.out)"

printf 'tok-secret-a1 vol-a\n' >tokens
chmod 600 tokens
mkdir store

# scrape URL FILE: GET URL into FILE, then promtool's lint of it (which fails on a
# malformed exposition, a counter without _total, a unit it does not know, ...).
scrape() {
  python3 -c 'import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=10)
assert r.status == 200, r.status
assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
sys.stdout.write(r.read().decode())' "$1" >"$2" || fail "scraping $1 failed"
  promtool check metrics <"$2" >promtool.out 2>&1 ||
    fail "promtool check metrics $2: $(cat promtool.out)"
}
# value FILE NAME{LABELS}: the sample's value (the labels as written, in order).
value() {
  python3 -c 'import sys
for line in open(sys.argv[1]):
    name, _, v = line.rstrip("\n").rpartition(" ")
    if name == sys.argv[2]:
        print(v); break
else:
    sys.exit("no sample " + sys.argv[2])' "$1" "$2" || fail "$1 has no sample $2: $(cat "$1")"
}
# at_least A B: A >= B (numbers as the text format writes them).
at_least() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }

start_log_server 127.0.0.1:0 --store store --tokens tokens --insecure-loopback \
  --metrics 127.0.0.1:0
server_port=$port
server_metrics=$(sed -n 's/.*metrics at \(http:[^ ]*\).*/\1/p' log-server.log | tail -n 1)
[ -n "$server_metrics" ] || fail "rewind-server did not say where its metrics are: $(cat log-server.log)"
server_metrics_address=${server_metrics#http://}
server_metrics_address=${server_metrics_address%/metrics}

truncate -s 64M disk.img
start_server "$workdir/a.sock" image=disk.img journal=a.rewind segment-size=1M \
  ship=127.0.0.1:$server_port ship-token=tok-secret-a1 ship-volume=vol-a ship-compress=off \
  metrics=0
plugin_metrics=$("$REWIND_CLI" info --json a.rewind | json_field '["metrics"]')
case $plugin_metrics in http://127.0.0.1:*/metrics) ;; *) fail "rewind info gave metrics at '$plugin_metrics'" ;; esac
"$REWIND_CLI" info a.rewind | grep -qF "metrics     $plugin_metrics" ||
  fail "rewind info does not print where the metrics are"

# fio_write NAME ARGS...: one fio job against the volume; prints the bytes it wrote.
fio_write() {
  local name=$1
  shift
  fio --name="$name" --ioengine=nbd --uri="$(uri_of "$workdir/a.sock")" --output-format=json \
    "$@" >"$name.json" || fail "fio $name failed"
  # (The nbd engine prints a line of its own before the JSON.)
  python3 -c 'import json,sys; t = open(sys.argv[1]).read()
print(json.loads(t[t.index("{"):])["jobs"][0]["write"]["io_bytes"])' "$name.json"
}
scrape "$plugin_metrics" p0.txt
w0=$(value p0.txt 'rewind_request_bytes_total{volume="vol-a",type="write"}')
f0=$(value p0.txt 'rewind_requests_total{volume="vol-a",type="flush"}')
# Random 4k writes with a flush every 64, then sequential 1 MiB writes.
wrote1=$(fio_write rand --rw=randwrite --bs=4k --size=48M --io_size=8M --iodepth=16 --fsync=64)
wrote2=$(fio_write seq --rw=write --bs=1M --size=8M --iodepth=4 --offset=48M --fsync=8)
wrote=$((wrote1 + wrote2))
[ "$wrote" -ge $((16 << 20)) ] || fail "fio wrote only $wrote bytes"
# What fio wrote last may be acknowledged and not yet durable (its last flush went out
# with writes still in flight): the flusher makes it durable within flush-interval.
wait_durable() {
  local _
  for _ in $(seq 1 300); do
    scrape "$plugin_metrics" "$1"
    [ "$(value "$1" 'rewind_durable_seq{volume="vol-a"}')" = \
      "$(value "$1" 'rewind_last_seq{volume="vol-a"}')" ] && return 0
    sleep 0.1
  done
  fail "the volume's records did not become durable: $(grep _seq "$1")"
}
wait_durable p1.txt
w1=$(value p1.txt 'rewind_request_bytes_total{volume="vol-a",type="write"}')
python3 -c 'import sys
w, fio = float(sys.argv[1]) - float(sys.argv[2]), float(sys.argv[3])
sys.exit(0 if abs(w - fio) <= 0.01 * fio else "metrics count %d bytes written, fio wrote %d" % (w, fio))' \
  "$w1" "$w0" "$wrote" || fail "the written bytes do not follow fio's"
f1=$(value p1.txt 'rewind_requests_total{volume="vol-a",type="flush"}')
[ "$((f1 - f0))" -ge $((8 * 1024 / 4 / 64)) ] || fail "only $((f1 - f0)) flushes counted"
fc=$(value p1.txt 'rewind_flush_duration_seconds_count{volume="vol-a"}')
inf=$(value p1.txt 'rewind_flush_duration_seconds_bucket{volume="vol-a",le="+Inf"}')
[ "$fc" = "$inf" ] && [ "$fc" -ge "$((f1 - f0))" ] || fail "flush latencies: count $fc, +Inf $inf"
at_least "$(value p1.txt 'rewind_journal_bytes{volume="vol-a"}')" "$wrote" ||
  fail "the journal holds fewer bytes than were written"
at_least "$(value p1.txt 'rewind_journal_segments{volume="vol-a"}')" 10 ||
  fail "$wrote bytes in 1M segments make at least 10 of them"
[ "$(value p1.txt 'rewind_errors_total{volume="vol-a",kind="journal"}')" = 0 ] ||
  fail "journal errors counted without a failure"

# The server: once the shipper caught up, it holds the volume's last seq.
caught_up() {
  scrape "$plugin_metrics" pc.txt
  [ "$(value pc.txt 'rewind_durable_seq{volume="vol-a"}')" = \
    "$(value pc.txt 'rewind_last_seq{volume="vol-a"}')" ] &&
    [ "$(value pc.txt 'rewind_ship_lag_bytes{volume="vol-a"}')" = 0 ] &&
    [ "$(value pc.txt 'rewind_ship_acked_seq{volume="vol-a"}')" = \
      "$(value pc.txt 'rewind_durable_seq{volume="vol-a"}')" ]
}
wait_caught_up() {
  local _
  for _ in $(seq 1 300); do
    caught_up && return 0
    sleep 0.1
  done
  fail "the shipper did not catch up: $(cat pc.txt)"
}
wait_caught_up
durable=$(value pc.txt 'rewind_durable_seq{volume="vol-a"}')
scrape "$server_metrics" s1.txt
[ "$(value s1.txt 'rewind_server_last_seq{volume="vol-a"}')" = "$durable" ] ||
  fail "the server's last seq is not the volume's durable seq $durable: $(cat s1.txt)"
# (Shipped as the journal stores them: the data written, with a header per record.)
received=$(value s1.txt 'rewind_server_received_bytes_total{volume="vol-a"}')
python3 -c 'import sys; r, w = map(float, sys.argv[1:]); sys.exit(0 if w <= r <= 1.05 * w else 1)' \
  "$received" "$wrote" || fail "the server received $received bytes for the $wrote written"
stored=$(value s1.txt 'rewind_server_stored_bytes{volume="vol-a"}')
at_least "$stored" "$wrote" || fail "the server stores $stored bytes, fewer than the $wrote written"
[ "$(value s1.txt 'rewind_server_sessions{volume="vol-a",purpose="ship"}')" = 1 ] ||
  fail "the server counts no open shipping session"

# A peer with a bad token is counted without a volume; a reader with a good one, by it.
REWIND_TOKEN=tok-wrong "$REWIND_CLI" info "rewind://127.0.0.1:$server_port/vol-b" >/dev/null 2>&1 &&
  fail "a bad token was let in"
REWIND_TOKEN=tok-secret-a1 "$REWIND_CLI" info "rewind://127.0.0.1:$server_port/vol-a" >/dev/null ||
  fail "rewind info rewind:// failed"
scrape "$server_metrics" s2.txt
[ "$(value s2.txt 'rewind_server_refusals_total{volume="",reason="UNAUTHORIZED"}')" = 1 ] ||
  fail "the refusal of a bad token is not counted: $(cat s2.txt)"
[ "$(value s2.txt 'rewind_server_sessions_total{volume="vol-a",purpose="read"}')" = 1 ] ||
  fail "the reading session is not counted"
! grep -q 'vol-b' s2.txt || fail "a volume name no token granted became a label"

# The server stops: writes go on, the lag rises scrape after scrape; it returns on the
# same port and the lag falls to 0.
kill -TERM "$log_server_pid"
wait "$log_server_pid" || true
fio_write more --rw=randwrite --bs=64k --size=32M --io_size=4M --fsync=16 >/dev/null
sleep 2
scrape "$plugin_metrics" p2.txt
lag2=$(value p2.txt 'rewind_ship_lag_seconds{volume="vol-a"}')
bytes2=$(value p2.txt 'rewind_ship_lag_bytes{volume="vol-a"}')
at_least "$lag2" 1.5 || fail "2 s after the server stopped the lag is $lag2 s"
at_least "$bytes2" $((4 << 20)) || fail "the lag in bytes is $bytes2 after 4 MiB written"
[ "$(value p2.txt 'rewind_ship_connected{volume="vol-a"}')" = 0 ] || fail "shipper still connected"
at_least "$(value p2.txt 'rewind_errors_total{volume="vol-a",kind="ship"}')" 1 ||
  fail "the lost session is not counted as a shipping error"
sleep 1
scrape "$plugin_metrics" p3.txt
at_least "$(value p3.txt 'rewind_ship_lag_seconds{volume="vol-a"}')" "$(python3 -c "print($lag2 + 0.9)")" ||
  fail "the lag did not rise: $lag2 s, then $(value p3.txt 'rewind_ship_lag_seconds{volume="vol-a"}') s"
start_log_server "127.0.0.1:$server_port" --store store --tokens tokens --insecure-loopback \
  --metrics "$server_metrics_address"
wait_caught_up
[ "$(value pc.txt 'rewind_ship_lag_seconds{volume="vol-a"}')" = 0 ] || fail "the lag did not fall to 0"
[ "$(value pc.txt 'rewind_ship_state{volume="vol-a",state="records"}')" = 1 ] ||
  fail "the shipper is not in its records phase"
scrape "$server_metrics" s3.txt
[ "$(value s3.txt 'rewind_server_last_seq{volume="vol-a"}')" = "$(value pc.txt 'rewind_durable_seq{volume="vol-a"}')" ] ||
  fail "the restarted server does not hold the durable seq"

# Nothing of the volume's place or the token is exposed.
for f in p1.txt p3.txt s2.txt s3.txt; do
  ! grep -qF -e "$workdir" -e "tok-secret" -e "a.rewind" -e "disk.img" "$f" ||
    fail "$f exposes a path or a token"
done

# The endpoint answers GET /metrics only; a malformed request gets 400; neither stops it.
python3 - "${plugin_metrics#http://}" <<'PY' || fail "the endpoint answered something other than GET /metrics"
import socket, sys
host, _, rest = sys.argv[1].partition(":")
port = int(rest.split("/")[0])
def ask(raw):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data.split(b"\r\n", 1)[0]
assert ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404"), "/"
assert ask(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405"), "POST"
assert ask(b"\x16\x03\x01 not http\r\n\r\n").startswith(b"HTTP/1.1 400"), "garbage"
assert ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 400"), "huge header"
assert ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200"), "HEAD"
PY
scrape "$plugin_metrics" p4.txt

# Bad metrics= values and a port in use: one line, nothing served.
for bad in metrics=notaport metrics=127.0.0.1:70000 "metrics=[::1" metrics=192.0.2.1:9420 \
  "metrics=${plugin_metrics#http://}"; do
  bad=${bad%/metrics}
  if nbdkit -f -U "$workdir/b.sock" "$REWIND_PLUGIN" image=disk.img journal=b.rewind "$bad" \
    2>bad.err; then
    fail "nbdkit started with $bad"
  fi
  grep -q "metrics" bad.err || fail "$bad: the error does not name metrics: $(cat bad.err)"
  [ ! -e b.rewind ] || fail "$bad created a journal"
done
grep -q "address already in use\|Address already in use" bad.err ||
  fail "a port in use is not said so: $(cat bad.err)"
if nbdkit -f -U "$workdir/b.sock" "$REWIND_PLUGIN" journal=a.rewind seq=1 metrics=0 2>bad.err; then
  fail "a view started with metrics="
fi
grep -q "metrics= counts what a live volume" bad.err || fail "metrics= with a view: $(cat bad.err)"
"$REWIND_SERVER" --listen 127.0.0.1:0 --store store --tokens tokens --insecure-loopback \
  --metrics nope 2>bad.err && fail "rewind-server started with --metrics nope"
grep -q "^rewind-server: --metrics: metrics address 'nope'" bad.err ||
  fail "rewind-server --metrics nope: $(cat bad.err)"

stop_server
echo "metrics: fio wrote $wrote bytes; lag ${lag2}s after 2 s without the server, 0 after"
