#!/usr/bin/env bash
# rewind rebase with the real plugin and CLI: refused while the volume is served; folds
# whole segments into a new base; points after it restore exactly as before, points
# before it are an error naming the restorable range; the plugin serves on from it.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy

cd "$workdir"
truncate -s 16M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M
uri=$(uri_of "$sock")
# Eight phases of 512 KiB writes, each flushed and captured with nbdcopy; a mark after
# the fourth. Segments of 1 MiB hold two phases each.
for i in 1 2 3 4 5 6 7 8; do
  qemu-io -f raw -t writeback -c "write -P $i $((i * 1536))K 512K" -c flush "$uri" >/dev/null
  nbdcopy "$uri" "phase$i.img"
  [ "$i" -eq 4 ] && "$REWIND_CLI" mark disk.rewind after-four >/dev/null
done
expect_cli 1 "is in use by another rewind process (it holds the journal's lock); is the plugin serving it? Stop the server first" rebase disk.rewind --before now
stop_server

expect_cli 2 "--before" rebase disk.rewind --before yesterday-ish
expect_cli 2 "before is required" rebase disk.rewind
cp disk.rewind/MANIFEST manifest.before
"$REWIND_CLI" rebase disk.rewind --before 2000-01-01T00:00:00Z | grep -q "nothing to fold" ||
  fail "a time before the first record folded something"
cmp manifest.before disk.rewind/MANIFEST || fail "a rebase with nothing to fold changed the manifest"

# log --json: the mark's seq, and where the last segment at or before it ends.
read -r mark_seq fold_to last < <("$REWIND_CLI" log --json disk.rewind | python3 -c '
import json, sys
j = json.load(sys.stdin)
mark = [m["seq"] for m in j["marks"] if m["name"] == "after-four"][0]
ends = [s["last_seq"] for s in j["segments"] if s["sealed"] and s["last_seq"] <= mark]
print(mark, ends[-1], j["segments"][-1]["last_seq"])')
out=$("$REWIND_CLI" rebase disk.rewind --before mark:after-four)
echo "$out" | grep -q "the base is now seq $fold_to " || fail "rebase to the mark (seq $mark_seq, fold to $fold_to): $out"
[ "$(ls disk.rewind/base)" = "$(printf '%020d.img' "$fold_to")" ] || fail "base files: $(ls disk.rewind/base)"
"$REWIND_CLI" restore disk.rewind --mark after-four -o at-mark.img >/dev/null
cmp at-mark.img phase4.img || fail "the mark no longer restores the state of phase 4"
"$REWIND_CLI" restore disk.rewind --seq "$last" -o newest.img >/dev/null
cmp newest.img phase8.img || fail "the newest state changed"
expect_cli 1 "before the oldest restorable point; the restorable range is seq $fold_to" \
  restore disk.rewind --seq 1 -o old.img
[ ! -e old.img ] || fail "a refused restore wrote a file"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after rebase"
check_replay disk.rewind disk.img

# Everything: the mark is given up, by name.
out=$("$REWIND_CLI" rebase disk.rewind --before now)
echo "$out" | grep -q "the base is now seq $last " || fail "rebase to now: $out"
echo "$out" | grep -q "no longer restorable by name: after-four" || fail "the mark given up was not named: $out"
expect_cli 1 "no mark named 'after-four'" restore disk.rewind --mark after-four -o gone.img
"$REWIND_CLI" restore disk.rewind -o newest2.img >/dev/null
cmp newest2.img phase8.img || fail "the newest state changed after folding everything"
check_replay disk.rewind disk.img

# The plugin serves on; the next writes continue the seq.
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M
qemu-io -f raw -t writeback -c "write -P 9 0 4K" -c flush "$uri" >/dev/null
stop_server
[ "$("$REWIND_CLI" info --json disk.rewind | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])')" -eq $((last + 1)) ] ||
  fail "seq did not continue after the rebase"
check_replay disk.rewind disk.img
echo "PASS: rebase"
