#!/usr/bin/env bash
# A damaged journal at start: a flipped byte in a sealed segment, a truncated or a
# missing segment, a damaged manifest. The plugin refuses to serve read-write with one
# error naming the damage and changes nothing; `rewind verify` and `rewind restore
# --no-image-reads` name the same problem, while a restore or a point-in-time export that
# reads from the image what it still holds (checked against the index) needs nothing from
# the damaged segment and gives the newest state, warning of a segment cut short. A damaged index is rebuilt from the records, by the plugin at
# start and by a restore, and the volume is served and restored as before.
source "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy qemu-io sha256sum

cd "$workdir"
truncate -s 16M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M
for i in 0 1 2 3 4 5; do
  qemu-io -f raw -t writeback -c "write -P $((i + 1)) $((i * 2))M 900k" -c flush "$uri" >/dev/null
done
stop_server
[ "$(ls disk.rewind/segments/*.seg | wc -l)" -ge 5 ] || fail "expected at least 5 sealed segments"
last=$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')
cp -a disk.rewind pristine.rewind
cp disk.img pristine.img
third=$(ls disk.rewind/segments/*.seg | sed -n 3p)
third_name=$(basename "$third")
# The last seq of the second segment: every state up to it is undamaged by the third.
before_third=$(( $(basename "$third" .seg | sed 's/^0*//') - 1 ))

fresh() {
  rm -rf disk.rewind
  cp -a pristine.rewind disk.rewind
  cp pristine.img disk.img
}
state() { find disk.rewind disk.img -type f ! -name LOCK -print0 | sort -z | xargs -0 sha256sum; }

# expect_refused MESSAGE: the plugin will not start read-write, says MESSAGE, and
# leaves the journal and the image as they were.
expect_refused() {
  local msg=$1 before rc=0
  before=$(state)
  nbdkit -U - "$REWIND_PLUGIN" image=disk.img journal=disk.rewind --run true >out.log 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "served a damaged journal read-write ($msg)"
  grep -qF -- "$msg" out.log || { cat out.log; fail "no '$msg' in the start-up error"; }
  grep -qF "Not serving" out.log || { cat out.log; fail "the error does not say it refused"; }
  [ "$(grep -c 'error' out.log)" -eq 1 ] || { cat out.log; fail "expected one error line"; }
  [ "$before" = "$(state)" ] || fail "start-up changed the damaged journal ($msg)"
}

# --- a flipped byte inside a sealed segment ----------------------------------------
fresh
printf '\xff' | dd of="$third" bs=1 seek=300000 conv=notrunc status=none
expect_refused "$third_name"
expect_cli 1 "$third_name" verify disk.rewind
expect_cli 1 "$third_name" restore disk.rewind --seq "$last" --no-image-reads -o out.img
[ ! -e out.img ] || fail "restore left a partial OUT"
# Read from the image, which still holds the damaged record's bytes (checked against
# the index's checksums), the newest state needs nothing from the damaged segment.
"$REWIND_CLI" restore disk.rewind --seq "$last" -o out.img >restore.out 2>&1 ||
  { cat restore.out; fail "restore from the image past a damaged segment"; }
grep -q "read from the image $workdir/disk.img" restore.out || { cat restore.out; fail "no image reads"; }
cmp out.img disk.img || fail "restore from the image differs from the image"
rm -f out.img restore.out
# Every point before the damage still restores.
"$REWIND_CLI" restore disk.rewind --seq "$before_third" -o before.img >/dev/null 2>&1 ||
  fail "restore before the damaged segment failed"
qemu-io -f raw -c "read -P 2 2M 900k" before.img | grep -q 'read 921600/921600' ||
  fail "restore before the damage is wrong"
rm -f before.img

# --- a truncated segment --------------------------------------------------------------
fresh
truncate -s 500000 "$third"
expect_refused "$third_name is 500000 bytes but the manifest says"
expect_cli 1 "$third_name" verify disk.rewind
expect_cli 1 "$third_name" restore disk.rewind --seq "$last" --no-image-reads -o out.img
[ ! -e out.img ] || fail "restore left a partial OUT"
"$REWIND_CLI" restore disk.rewind --seq "$last" -o out.img >restore.out 2>&1 ||
  { cat restore.out; fail "restore from the image past a truncated segment"; }
cmp out.img disk.img || fail "restore from the image past a truncated segment differs"
# It needs nothing from the segment, and still says that the segment is cut short.
grep -q "rewind restore: warning: segment $third_name is 500000 bytes but the manifest says" restore.out ||
  { cat restore.out; fail "no warning of the truncated segment"; }
rm -f out.img restore.out
# The point-in-time export serves it from the image too, and warns at start.
nbdkit -U - "$REWIND_PLUGIN" journal=disk.rewind seq="$last" \
  --run 'nbdcopy "$uri" view.img' >view.log 2>&1 || { cat view.log; fail "view past a truncated segment"; }
cmp view.img disk.img || fail "the view past a truncated segment differs"
grep -q "warning: segment $third_name is 500000 bytes but the manifest says" view.log ||
  { cat view.log; fail "the view does not warn of the truncated segment"; }
rm -f view.img view.log

# --- a missing segment ---------------------------------------------------------------
fresh
rm "$third"
expect_refused "segment $third_name (seq $((before_third + 1))..) listed in the manifest of"
expect_cli 1 "$third_name" verify disk.rewind
expect_cli 1 "$third_name" restore disk.rewind --seq "$last" -o out.img
[ ! -e out.img ] || fail "restore left a partial OUT"

# --- a damaged manifest ----------------------------------------------------------------
fresh
sed -i 's/^checkpoint-seq .*/checkpoint-seq 1/' disk.rewind/MANIFEST
expect_refused "MANIFEST"
expect_cli 1 "MANIFEST" verify disk.rewind
expect_cli 1 "MANIFEST" restore disk.rewind --seq "$last" -o out.img
[ ! -e out.img ] || fail "restore left a partial OUT"

# --- a damaged index: rebuilt, and the volume served as before -----------------------
fresh
idx=${third%.seg}.idx
# bytes 112.. are the first entry's payload checksum (docs/FORMAT.md)
printf '\x00\x00\x00\x00' | dd of="$idx" bs=1 seek=112 conv=notrunc status=none
cmp -s "$idx" "pristine.rewind/segments/$(basename "$idx")" && fail "the index was not damaged"
start_server "$sock" image=disk.img journal=disk.rewind
grep -q "index of segment $third_name .*rebuilt from its records" server.log ||
  { cat server.log; fail "no warning about the rebuilt index"; }
cmp "$idx" "pristine.rewind/segments/$(basename "$idx")" || fail "the rebuilt index differs"
qemu-io -f raw -c "read -P 6 10M 900k" "$uri" | grep -q 'read 921600/921600' || fail "read after rebuild"
stop_server
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after the rebuild"
# A restore, too, reads past a damaged index: it rebuilds it from the records.
printf '\x00\x00\x00\x00' | dd of="$idx" bs=1 seek=112 conv=notrunc status=none
"$REWIND_CLI" restore disk.rewind --seq "$last" -o out.img >/dev/null 2>restore.err ||
  { cat restore.err; fail "restore with a damaged index"; }
grep -q "rebuilt the index of segment $third_name from its records" restore.err ||
  { cat restore.err; fail "restore did not say it rebuilt the index"; }
cmp out.img disk.img || fail "restore with a damaged index differs from the image"
rm -f out.img

echo "PASS: damaged journals are refused, named, and left unchanged; indexes are rebuilt"
