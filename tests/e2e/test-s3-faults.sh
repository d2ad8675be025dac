#!/usr/bin/env bash
# Shipping to a bucket of a real S3 server (Ceph's RADOS Gateway) when things go wrong:
# wrong credentials, a missing bucket, server errors (503 SlowDown, from a proxy in front
# of the gateway: the one fault the gateway cannot be made to give), a stalled gateway
# (SIGSTOP), and a second writer (another volume on the prefix; a copy of the volume on
# a second server). Each gives one clear error line; the plugin goes on taking writes;
# the shipped position never passes what the bucket's manifest holds; once the fault is
# gone the bucket catches up, and it restores what was written.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
start_ceph
cd "$workdir"
s3 mb s3://vols >/dev/null
rgw_port=${AWS_ENDPOINT_URL##*:}

status() { "$REWIND_CLI" info --json "$1.rewind" | json_field "$2"; }
caught_up() {  # VOL URI: the bucket holds every durable record of VOL
  [ "$(status "$1" '["ship"]["phase"]')" = records ] &&
    [ "$(status "$1" '["ship"]["acked_seq"]')" = "$(status "$1" '["ship"]["durable_seq"]')" ] &&
    [ "$(bucket_last "$2")" = "$(status "$1" '["ship"]["durable_seq"]')" ]
}
wait_caught_up() {
  local i
  for i in $(seq 1 300); do
    caught_up "$1" "$2" && return 0
    sleep 0.1
  done
  fail "$2 did not catch up with $1: $("$REWIND_CLI" info "$1.rewind"); $(cat server.log)"
}
# The shipped position is never past what the bucket's manifest holds.
check_not_past() {  # VOL URI
  local acked held
  acked=$(status "$1" '["ship"]["acked_seq"]')
  held=$(bucket_last "$2")
  [ "$acked" -le "${held:-0}" ] || fail "$1 says seq $acked is shipped; $2 holds ${held:-nothing}"
}
write() {  # VOL SEED: 1 MiB written and flushed
  qemu-io -f raw -c "write -P $2 $((RANDOM % 15))M 1M" -c flush "$(uri_of "$workdir/$1.sock")" \
    >/dev/null
}
new_volume() {  # VOL
  truncate -s 16M "$1.img"
  dd if=/dev/urandom of="$1.img" bs=1M count=2 seek=3 conv=notrunc status=none
}
# lines_with TEXT: how many lines of the server log hold TEXT.
lines_with() { grep -cF -- "$1" server.log || true; }

# --- Wrong credentials: one line, nothing stored; the right ones ship everything. ---
new_volume a
AWS_SECRET_ACCESS_KEY=wrong-secret start_server "$workdir/a.sock" image=a.img \
  journal=a.rewind ship=s3://vols/a
write a 11
write a 12
sleep 3
[ "$(lines_with SignatureDoesNotMatch)" -eq 1 ] ||
  fail "wrong credentials: expected one error line, got: $(cat server.log)"
grep -q "check the access key, secret and region" server.log || fail "no advice: $(cat server.log)"
[ -z "$(bucket_last s3://vols/a)" ] || fail "a manifest was stored with wrong credentials"
[ "$(status a '["ship"]["acked_seq"]')" = 0 ] || fail "something counts as shipped"
stop_server
start_server "$workdir/a.sock" image=a.img journal=a.rewind ship=s3://vols/a
write a 13
wait_caught_up a s3://vols/a
nbdcopy "$(uri_of "$workdir/a.sock")" a-truth.img
stop_server
"$REWIND_CLI" restore s3://vols/a -o r.img >/dev/null
cmp -s r.img a-truth.img || fail "the bucket's newest state of a differs from the volume"
rm r.img

# --- A missing bucket: one line; created later, the shipper catches up by itself. ---
: >server.log
new_volume b
start_server "$workdir/b.sock" image=b.img journal=b.rewind ship=s3://later/b
write b 21
sleep 2
[ "$(lines_with "NoSuchBucket (create the bucket first")" -eq 1 ] ||
  fail "missing bucket: expected one error line, got: $(cat server.log)"
s3 mb s3://later >/dev/null
write b 22
wait_caught_up b s3://later/b
stop_server

# --- Server errors (503 SlowDown from a proxy in front of the gateway). ---
: >server.log
echo pass >proxy.mode
python3 "$(dirname "$0")/../tools/s3_fault_proxy.py" "$rgw_port" proxy.mode >proxy.port &
cleanup "kill $!"
for i in $(seq 1 50); do [ -s proxy.port ] && break; sleep 0.1; done
proxy=http://127.0.0.1:$(cat proxy.port)
new_volume c
start_server "$workdir/c.sock" image=c.img journal=c.rewind ship=s3://vols/c \
  ship-endpoint="$proxy"
write c 31
wait_caught_up c s3://vols/c
echo error >proxy.mode
write c 32
write c 33
sleep 2
check_not_past c s3://vols/c
[ "$(status c '["ship"]["acked_seq"]')" -lt "$(status c '["ship"]["durable_seq"]')" ] ||
  fail "the shipper says it shipped through server errors"
[ "$(lines_with "503 SlowDown")" -eq 1 ] || fail "server errors: expected one line: $(cat server.log)"
echo pass >proxy.mode
wait_caught_up c s3://vols/c
stop_server

# --- A stalled gateway (stopped with SIGSTOP): the request times out, and is retried. ---
: >server.log
rgw_pid=$(awk '$2 == "radosgw" {print $1}' ceph/pids)
start_server "$workdir/c.sock" image=c.img journal=c.rewind ship=s3://vols/c ship-timeout=2s
wait_caught_up c s3://vols/c
kill -STOP "$rgw_pid"
cleanup "kill -CONT $rgw_pid"
write c 34
# (A stalled PUT is tried three times, each given ship-timeout=.)
for i in $(seq 1 150); do grep -q "ship: .*s3://vols/c" server.log && break; sleep 0.1; done
grep -q "ship: .*s3://vols/c.*\(too slow\|timed out\|Timeout\)" server.log ||
  fail "no timeout logged: $(cat server.log)"
[ "$(status c '["ship"]["acked_seq"]')" -lt "$(status c '["ship"]["durable_seq"]')" ] ||
  fail "the shipper says it shipped to a stopped gateway"
kill -CONT "$rgw_pid"
check_not_past c s3://vols/c
wait_caught_up c s3://vols/c
stop_server

# --- A second writer. Another volume on a prefix in use is refused at once. ---
: >server.log
new_volume d
s3 get s3://vols/a/MANIFEST before >/dev/null
start_server "$workdir/d.sock" image=d.img journal=d.rewind ship=s3://vols/a
write d 41
for i in $(seq 1 50); do [ "$(status d '["ship"]["phase"]')" = refused ] && break; sleep 0.1; done
[ "$(status d '["ship"]["phase"]')" = refused ] || fail "the other volume was not refused"
[ "$(lines_with "s3://vols/a holds volume")" -eq 1 ] ||
  fail "another volume: expected one error line: $(cat server.log)"
s3 get s3://vols/a/MANIFEST after >/dev/null
cmp -s before after || fail "the refused volume changed the bucket's manifest"
stop_server

# A copy of volume a on a second server: the one that writes first wins; the other is
# refused when it writes, and again when it restarts; the bucket holds the winner's.
: >server.log
cp -a a.img a2.img
cp -a a.rewind a2.rewind
start_server "$workdir/a.sock" image=a.img journal=a.rewind ship=s3://vols/a
pid_a=$server_pid
start_server "$workdir/a2.sock" image=a2.img journal=a2.rewind ship=s3://vols/a
pid_a2=$server_pid
for v in a a2; do
  for i in $(seq 1 50); do [ "$(status $v '["ship"]["phase"]')" = records ] && break; sleep 0.1; done
done
write a2 51
wait_caught_up a2 s3://vols/a
nbdcopy "$(uri_of "$workdir/a2.sock")" a2-truth.img
held=$(bucket_last s3://vols/a)
write a 52
for i in $(seq 1 50); do [ "$(status a '["ship"]["phase"]')" = refused ] && break; sleep 0.1; done
[ "$(status a '["ship"]["phase"]')" = refused ] ||
  fail "the copy that wrote second was not refused: $("$REWIND_CLI" info a.rewind)"
[ "$(lines_with "another writer, generation")" -eq 1 ] ||
  fail "second writer: expected one error line: $(cat server.log)"
grep -q "refused, never interleaved" server.log || fail "no refusal: $(cat server.log)"
[ "$(bucket_last s3://vols/a)" = "$held" ] || fail "the refused copy moved the bucket"
check_not_past a s3://vols/a
server_pid=$pid_a stop_server
: >server.log
start_server "$workdir/a.sock" image=a.img journal=a.rewind ship=s3://vols/a
for i in $(seq 1 50); do [ "$(status a '["ship"]["phase"]')" = refused ] && break; sleep 0.1; done
[ "$(status a '["ship"]["phase"]')" = refused ] || fail "the refused copy was let in after a restart"
grep -q "stored the manifest after this journal last shipped there" server.log ||
  fail "no refusal at restart: $(cat server.log)"
stop_server
server_pid=$pid_a2 stop_server
"$REWIND_CLI" restore s3://vols/a -o r.img >/dev/null
cmp -s r.img a2-truth.img || fail "the bucket does not hold the winning copy's newest state"
"$REWIND_CLI" verify s3://vols/a >/dev/null || fail "verify s3://vols/a"
echo "PASS: s3-faults"
