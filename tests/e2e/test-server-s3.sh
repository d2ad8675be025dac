#!/usr/bin/env bash
# rewind-server with its store in a bucket of a real S3 server (Ceph's RADOS Gateway,
# started by the test), and two servers fronting that one bucket, each with a cache of
# its own.
#
# A plugin ships live to server A while qemu-io writes in phases, each ending in a
# flush and a mark whose state is captured with nbdcopy. A is killed with SIGKILL; B
# takes its address and the volume (its spool made from the bucket), the plugin
# catches up through it; later A comes back with its stale spool and takes the volume
# again. Every mark and a time between phases then restore from the bucket equal to the
# captures, through `rewind restore s3://` and through a server (`rewind://`);
# `rewind verify s3://` passes; a server's spool keeps neither the base nor a sealed
# segment the bucket holds.
#
# Two sessions of one volume on the two servers at once: the one overtaken is refused
# with ERROR 8 BUSY naming the other writer, never interleaved, and the copy restores
# as the journal. A quota counts what the copy takes of the bucket. Bad settings (no
# --cache, a missing bucket, wrong credentials) give one error line and create nothing.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"
start_ceph
cd "$workdir"
s3 mb s3://rewind >/dev/null
store=s3://rewind/servers
printf 'tok-a vol-a\ntok-c vol-c\n' >tokens
chmod 600 tokens

# --- bad settings: one error line, exit 2, nothing created --------------------------
expect_refused_start() {  # MESSAGE ARGS...
  local msg=$1 rc=0
  shift
  timeout 30 "$REWIND_SERVER" --listen 127.0.0.1:0 --tokens tokens --insecure-loopback "$@" \
    2>start.err || rc=$?
  [ "$rc" -eq 2 ] || fail "rewind-server $*: exit $rc, expected 2 ($(cat start.err))"
  [ "$(wc -l <start.err)" -eq 1 ] || fail "rewind-server $*: not one error line: $(cat start.err)"
  grep -qF -- "$msg" start.err || fail "rewind-server $*: no '$msg' in: $(cat start.err)"
  [ ! -e bad-cache ] || fail "rewind-server $* created its cache though it was refused"
}
expect_refused_start "needs --cache DIR" --store $store
expect_refused_start "NoSuchBucket" --store s3://no-such-bucket/x --cache bad-cache
AWS_SECRET_ACCESS_KEY=wrong expect_refused_start "403" --store $store --cache bad-cache
expect_refused_start "--cache is for a store in a bucket" --store bad-store --cache bad-cache

# --- a live volume through two servers ---------------------------------------------
serve() {  # NAME LISTEN: server NAME (cache-NAME) on LISTEN; sets NAME_pid and port
  start_log_server "$2" --store $store --cache "cache-$1" --tokens tokens --insecure-loopback \
    --idle-timeout 60s
  eval "${1}_pid=$log_server_pid"
}
serve a 127.0.0.1:0
listen=127.0.0.1:$port

truncate -s 64M a.img
dd if=/dev/urandom of=a.img bs=1M count=24 seek=20 conv=notrunc status=none
start_server "$workdir/a.sock" image=a.img journal=a.rewind segment-size=1M \
  ship=$listen ship-token=tok-a ship-volume=vol-a
plugin_pid=$server_pid

status() { "$REWIND_CLI" info --json a.rewind | json_field "$1"; }
wait_caught_up() {
  local i
  for i in $(seq 1 300); do
    if [ "$(status '["ship"]["phase"]')" = records ] &&
      [ "$(status '["ship"]["acked_seq"]')" = "$(status '["ship"]["durable_seq"]')" ]; then
      [ "$(bucket_last $store/vol-a)" = "$(status '["ship"]["acked_seq"]')" ] ||
        fail "acknowledged seq $(status '["ship"]["acked_seq"]'), but the bucket holds $(bucket_last $store/vol-a)"
      return 0
    fi
    sleep 0.1
  done
  fail "the server did not catch up: $("$REWIND_CLI" info a.rewind); $(cat log-server.log)"
}
phase() { write_phase "$workdir/a.sock" a.rewind "$1" 6; }

phase 1
phase 2
wait_caught_up
# The spool keeps what the bucket does not hold whole: no base, no sealed segment.
[ -z "$(ls cache-a/spool/vol-a/base)" ] || fail "A's spool kept the base: $(ls cache-a/spool/vol-a/base)"
[ "$(find cache-a/spool/vol-a/segments -name '*.seg' | wc -l)" -le 1 ] ||
  fail "A's spool kept sealed segments: $(ls cache-a/spool/vol-a/segments)"

# A dies; B takes its address: its spool comes from the bucket.
kill -KILL "$a_pid"
wait "$a_pid" 2>/dev/null || true
phase 3
serve b "$listen"
wait_caught_up
grep -q "volume 'vol-a': starting its spool again from $store/vol-a" log-server.log ||
  fail "B did not start its spool from the bucket: $(cat log-server.log)"
phase 4
wait_caught_up

# A comes back with its stale spool and takes the volume again.
kill -TERM "$b_pid"
wait "$b_pid" || fail "B did not stop cleanly on SIGTERM"
adopted=$(grep -c "starting its spool again" log-server.log)
serve a "$listen"
phase 5
wait_caught_up
[ "$(grep -c "starting its spool again" log-server.log)" -gt "$adopted" ] ||
  fail "A went on from its stale spool: $(cat log-server.log)"
server_pid=$plugin_pid
stop_server

# Every mark and a time between phases restore from the bucket as captured, straight
# and through a server.
"$REWIND_CLI" verify $store/vol-a >verify.out || fail "verify $store/vol-a: $(cat verify.out)"
for n in 1 2 3 4 5; do
  "$REWIND_CLI" restore $store/vol-a --mark "m$n" -o r.img >/dev/null
  cmp -s r.img "m$n.img" || fail "mark m$n restored from the bucket differs from its capture"
  rm -f r.img
  "$REWIND_CLI" restore "rewind://$listen/vol-a" --token tok-a --mark "m$n" -o r.img >/dev/null
  cmp -s r.img "m$n.img" || fail "mark m$n restored through a server differs from its capture"
  rm -f r.img
done
"$REWIND_CLI" restore $store/vol-a --at "$(cat time-m3)" -o r.img >/dev/null
cmp -s r.img m3.img || fail "the time after m3 restored from the bucket differs from m3"
rm -f r.img
"$REWIND_CLI" log "rewind://$listen/vol-a" --token tok-a >log.out
for n in 1 2 3 4 5; do
  grep -q "m$n" log.out || fail "the server's log of vol-a has no mark m$n: $(cat log.out)"
done
[ -z "$(ls cache-a/read)" ] || fail "readers' caches were left: $(ls cache-a/read)"

# --- two sessions of one volume at once ---------------------------------------------
serve b 127.0.0.1:0
b_port=$port
truncate -s 64M c.img
start_server "$workdir/c.sock" image=c.img journal=c.rewind segment-size=64M
cmds=()
for i in $(seq 0 199); do cmds+=(-c "write -P $((i % 250 + 1)) $(((i * 5) % 63))M 1M"); done
qemu-io -f raw -t writeback "${cmds[@]}" -c flush "$(uri_of "$workdir/c.sock")" >/dev/null
stop_server
last=$("$REWIND_CLI" info --json c.rewind | json_field '["last_seq"]')

"$REWIND_SHIP" c.rewind 127.0.0.1 "${listen#*:}" vol-c tok-c >ship1.out 2>&1 &
ship1=$!
for i in $(seq 1 200); do
  held=$(bucket_last $store/vol-c)
  [ -n "$held" ] && [ "$held" -gt 0 ] && break
  sleep 0.02
done
kill -STOP "$ship1"
sleep 0.5  # the frame the first server was storing, if any, lands
held=$(bucket_last $store/vol-c)
[ -n "$held" ] && [ "$held" -gt 0 ] && [ "$held" -lt "$last" ] ||
  fail "could not catch the first session in the middle (bucket at seq ${held:-none} of $last)"
# The other server takes the volume from the bucket and ships it whole.
"$REWIND_SHIP" c.rewind 127.0.0.1 "$b_port" vol-c tok-c >ship2.out 2>&1 ||
  fail "the second session failed: $(cat ship2.out)"
grep -q "^acked seq $last " ship2.out || fail "the second session ended at: $(cat ship2.out)"
kill -CONT "$ship1"
rc=0
wait "$ship1" || rc=$?
[ "$rc" -eq 1 ] && grep -q "BUSY: .*another writer, generation .*host" ship1.out ||
  fail "the overtaken session was not refused as busy (exit $rc): $(cat ship1.out)"
[ "$(bucket_last $store/vol-c)" = "$last" ] || fail "the bucket moved after the refusal"
# Shipped again through the first server, which starts from the bucket: nothing to send.
"$REWIND_SHIP" c.rewind 127.0.0.1 "${listen#*:}" vol-c tok-c >ship3.out 2>&1 ||
  fail "the first server did not take the volume back: $(cat ship3.out)"
grep -q "^acked seq $last " ship3.out || fail "the third session ended at: $(cat ship3.out)"
"$REWIND_CLI" verify $store/vol-c >/dev/null || fail "verify $store/vol-c"
"$REWIND_CLI" restore c.rewind -o local.img >/dev/null
"$REWIND_CLI" restore $store/vol-c -o r.img >/dev/null
cmp -s local.img r.img || fail "vol-c in the bucket differs from its journal"

# A quota counts what the volume's copy takes of the bucket.
printf 'tok-q vol-q@8M\n' >>tokens
kill -HUP "$b_pid"
for i in $(seq 1 50); do grep -q "reloaded tokens" log-server.log && break; sleep 0.1; done
rc=0
"$REWIND_SHIP" c.rewind 127.0.0.1 "$b_port" vol-q tok-q >ship4.out 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "QUOTA: volume 'vol-q' takes" ship4.out ||
  fail "a volume past its quota was not refused (exit $rc): $(cat ship4.out)"
held=$(s3 du s3://rewind/servers/vol-q/ | awk '{print $1}')
[ "$held" -le $((8 << 20)) ] || fail "vol-q takes $held bytes of the bucket, past its 8 MiB quota"
echo "PASS"
