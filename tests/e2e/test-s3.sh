#!/usr/bin/env bash
# A volume ships straight to a bucket of a real S3 server (Ceph's RADOS Gateway, started
# by the test) while qemu-io writes to it in phases, each phase ending in a flush and a
# mark whose state is captured with nbdcopy. The gateway is killed in the middle of the
# run: the plugin goes on taking writes, the shipped position stays at what the bucket
# holds, and the shipper catches up once the gateway is back. Then, with the local
# journal deleted: every mark, a time between phases and the newest state restore from
# the bucket equal to the captures; `rewind verify s3://` passes; `rewind info` and
# `log` read it; the point-in-time export from the bucket, through a cache smaller than
# the volume, reads with nbdcopy equal to the capture; and the bucket holds no tail
# piece its manifest does not name.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
start_ceph
cd "$workdir"
s3 mb s3://vols >/dev/null
uri=s3://vols/hosts/a

# An image with data and holes: the base snapshot's zero chunks are not uploaded.
truncate -s 64M a.img
dd if=/dev/urandom of=a.img bs=1M count=40 seek=9 conv=notrunc status=none
start_server "$workdir/a.sock" image=a.img journal=a.rewind segment-size=1M ship=$uri \
  ship-timeout=3s

status() { "$REWIND_CLI" info --json a.rewind | json_field "$1"; }
caught_up() {
  [ "$(status '["ship"]["phase"]')" = records ] &&
    [ "$(status '["ship"]["acked_seq"]')" = "$(status '["ship"]["durable_seq"]')" ] &&
    [ "$(status '["ship"]["lag_bytes"]')" = 0 ]
}
wait_caught_up() {
  local i
  for i in $(seq 1 300); do
    caught_up && return 0
    sleep 0.1
  done
  fail "the bucket did not catch up: $("$REWIND_CLI" info a.rewind); $(cat server.log)"
}

# phase N: random writes, a flush, a mark mN and its captured state.
phase() { write_phase "$workdir/a.sock" a.rewind "$1" 8; }

phase 1
phase 2
wait_caught_up
# The gateway is killed: writes go on, and the plugin says how far behind the bucket is.
held=$(bucket_last $uri)
[ "$held" = "$(status '["ship"]["acked_seq"]')" ] ||
  fail "the bucket holds seq $held but the shipper says $(status '["ship"]["acked_seq"]')"
"$ceph_sh" stop-rgw "$workdir/ceph"
phase 3
phase 4
sleep 1.5
[ "$(status '["ship"]["acked_seq"]')" = "$held" ] ||
  fail "the shipped position moved to $(status '["ship"]["acked_seq"]') with the bucket at $held"
[ "$(status '["ship"]["lag_bytes"]')" -gt 0 ] || fail "no lag shown with the gateway gone"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)" \
  "$(status '["ship"]["lag_seconds"]')" || fail "no lag in seconds shown with the gateway gone"
"$REWIND_CLI" info a.rewind | grep -q "^shipping    to $uri: .*the bucket holds seq $held, .*last error: " ||
  fail "rewind info does not show the lag and the error: $("$REWIND_CLI" info a.rewind)"
# Sealed segments after the shipped position are kept while the bucket lacks them.
"$REWIND_CLI" log a.rewind | grep -c '^segment .* sealed' >sealed
[ "$(cat sealed)" -ge 3 ] || fail "only $(cat sealed) sealed segments kept during the outage"
"$ceph_sh" start-rgw "$workdir/ceph"
phase 5
wait_caught_up
[ "$(bucket_last $uri)" = "$(status '["ship"]["durable_seq"]')" ] ||
  fail "the bucket holds seq $(bucket_last $uri), not the journal's $(status '["ship"]["durable_seq"]')"
grep -q "ship: .*$uri" server.log || fail "the outage was not logged: $(cat server.log)"
stop_server
shipped=$("$REWIND_CLI" info --json a.rewind | json_field '["shipped_seq"]')
[ "$shipped" = "$(bucket_last $uri)" ] ||
  fail "the local manifest's shipped position $shipped is not the bucket's $(bucket_last $uri)"

# The local journal is gone: everything comes from the bucket.
rm -rf a.rewind
restore() {
  "$REWIND_CLI" restore $uri "$@" -o r.img >restore.out 2>&1 ||
    fail "restore $*: $(cat restore.out)"
}
for n in 1 2 3 4 5; do
  restore --mark "m$n"
  cmp -s r.img "m$n.img" || fail "the bucket's state at mark m$n differs from its capture"
  rm r.img
done
restore --at "$(cat time-m3)"
cmp -s r.img m3.img || fail "the bucket's state at $(cat time-m3) differs from the capture of m3"
rm r.img
restore
cmp -s r.img m5.img || fail "the bucket's newest state differs from the capture of m5"
grep -q "fetched .* in [0-9]* requests" restore.out || fail "restore did not say what it fetched"
rm r.img

"$REWIND_CLI" verify $uri >verify.out || fail "verify $uri: $(cat verify.out)"
grep -q "^ok: " verify.out || fail "verify printed no ok line: $(cat verify.out)"
"$REWIND_CLI" info $uri | grep -q "^restorable  seq 0 " || fail "rewind info did not read $uri"
"$REWIND_CLI" log $uri | grep -q "^mark m5 " || fail "rewind log did not list mark m5"
"$REWIND_CLI" diff $uri --from mark:m1 --to mark:m2 >diff.out 2>&1 ||
  fail "diff from the bucket: $(cat diff.out)"

# The point-in-time export from the bucket, through a cache of a quarter of the volume.
# The mark's data (40 MiB of the base and two phases of writes) does not fit: blocks
# fetched longest ago are dropped, and the cache stays within its bound, but for what
# one read needs at once (at most two 4 MiB base chunks and the records it reads) and
# what is kept whole (the open segment's bytes, the indexes).
mkdir tmp
TMPDIR=$workdir/tmp start_server "$workdir/v.sock" journal=$uri mark=m2 cache-size=8M
nbdcopy "$(uri_of "$workdir/v.sock")" v.img 2>nbdcopy.err ||
  fail "nbdcopy from the export: $(cat nbdcopy.err); $(cat server.log)"
cmp -s v.img m2.img || fail "the export of mark m2 from the bucket differs from its capture"
cached=$(du -s -B1 tmp/rewind-cache.* | awk '{print $1}')
[ "$cached" -le $((18 << 20)) ] || fail "the export's cache holds $cached bytes, past its 8 MiB"
stop_server
[ -z "$(ls tmp)" ] || fail "the export left its cache behind: $(ls tmp)"

# No tail piece is left that the manifest does not name (those a sealed segment
# replaced were removed).
s3 get $uri/MANIFEST manifest >/dev/null
named=$(sed -n 's/^tail \([0-9]*\) offset \([0-9]*\) end [0-9]* gen \([0-9]*\)$/\3 \1 \2/p' manifest |
  while read -r g f o; do printf '%s/tail/%020d/%020d-%020d\n' "$uri" "$g" "$f" "$o"; done | sort)
stored=$(s3 ls -r "$uri/tail/" | awk '{print $4}' | sort)
[ "$named" = "$stored" ] || fail "tail pieces in the bucket: $stored; named: $named"
echo "PASS: s3"
