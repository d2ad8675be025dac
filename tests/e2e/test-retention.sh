#!/usr/bin/env bash
# Retention in the running plugin: with journal-max=4M and 1 MiB segments, 16 MiB of
# writes leave a journal under 4 MiB; the plugin says loudly which history it gave up;
# the newest state and every point still promised restore exactly (captured with
# nbdcopy while it ran); points before the new base are refused naming the range.
# With retain-coarse= tiers, the plugin compacts older history by itself, and every
# mark still restores exactly.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy

cd "$workdir"
truncate -s 8M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M journal-max=4M
uri=$(uri_of "$sock")
for i in $(seq 1 32); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 14) * 512))K 512K" -c flush "$uri" >/dev/null
  [ "$i" -eq 30 ] && nbdcopy "$uri" at30.img
done
nbdcopy "$uri" newest.img
# The policy runs every second.
for _ in $(seq 1 100); do
  grep -q "over journal-max=4.0 MiB: giving up the history of seq 1\.\." "$workdir/server.log" && break
  sleep 0.1
done
grep -q "over journal-max=4.0 MiB: giving up the history of seq 1\.\." "$workdir/server.log" ||
  fail "no warning about the history given up: $(cat "$workdir/server.log")"
stop_server

bytes=$("$REWIND_CLI" info --json disk.rewind | python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_bytes"])')
[ "$bytes" -le $((4 << 20)) ] || fail "journal of $bytes bytes over journal-max=4M"
read -r base last < <("$REWIND_CLI" info --json disk.rewind |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["base_seq"], j["last_seq"])')
[ "$base" -gt 0 ] && [ "$last" -eq 32 ] || fail "base $base, last $last"
"$REWIND_CLI" restore disk.rewind -o r-newest.img >/dev/null
cmp r-newest.img newest.img || fail "the newest state differs"
if [ "$base" -le 30 ]; then
  "$REWIND_CLI" restore disk.rewind --seq 30 -o r30.img >/dev/null
  cmp r30.img at30.img || fail "seq 30 differs"
fi
expect_cli 1 "before the oldest restorable point; the restorable range is seq $base" \
  restore disk.rewind --seq 1 -o old.img
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify"
[ "$(ls disk.rewind/base | wc -l)" -eq 1 ] || fail "base files: $(ls disk.rewind/base)"
check_replay disk.rewind disk.img

# retain-coarse: every write kept for 1 s, then one state per 1 s up to 3 s old, per
# 2 s after that. Writes in flushed phases with marks, each captured; the plugin thins
# the history by itself, and every mark still restores its capture.
rm -rf disk.rewind
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M segment-age=1s \
  retain=1s retain-coarse=3s:1s,1h:2s
for i in $(seq 1 16); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 3) * 512))K 512K" \
    -c "write -P $((i + 100)) $(((i % 3) * 512 + 128))K 64K" -c flush "$uri" >/dev/null
  if [ $((i % 4)) -eq 0 ]; then
    nbdcopy "$uri" "mark$i.img"
    "$REWIND_CLI" mark disk.rewind "m$i" >/dev/null
  fi
  sleep 0.4
done
coarsest() {
  "$REWIND_CLI" info --json disk.rewind | json_field '["tiers"][-1]["granularity_ns"]'
}
for _ in $(seq 1 100); do
  [ "$(coarsest)" -eq 2000000000 ] && break
  sleep 0.1
done
[ "$(coarsest)" -eq 2000000000 ] ||
  fail "the plugin did not compact to the 2 s tier: $("$REWIND_CLI" info disk.rewind)"
stop_server
"$REWIND_CLI" info disk.rewind >info.txt
grep -q "one per 2.0s" info.txt || fail "info shows no 2 s tier: $(cat info.txt)"
for i in 4 8 12 16; do
  "$REWIND_CLI" restore disk.rewind --mark "m$i" -o r.img --force >/dev/null
  cmp r.img "mark$i.img" || fail "mark m$i does not restore its capture after compaction"
done
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after compaction"
check_replay disk.rewind disk.img
echo "PASS: retention"
