#!/usr/bin/env bash
# rewind bisect on a real file system: ext4 on a rewind export (nbdfuse + loop) written
# in many phases, each synced (hundreds of flush points); one file's block overwritten
# by a raw NBD write at a known seq in the middle, then more activity. A check that
# mounts each point (its NBD URI through nbdfuse and a loop device, the ext4 journal
# replayed into the throwaway overlay) and compares the file's checksum finds exactly
# that seq within ceil(log2(points)) + 2 steps; a check that skips some points still
# brackets it; a check that exits 200 stops the bisection with one line. Nothing is
# left running, and the history is unchanged.
source "$(dirname "$0")/functions.sh"
requires nbdkit nbdfuse losetup mkfs.ext4 filefrag fsfreeze qemu-io sha256sum python3
[ "$(id -u)" -eq 0 ] || fail "needs root (loop devices and mount)"

cd "$workdir"
truncate -s 64M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind flush-interval=20ms
mount_ext4 "$sock" -E nodiscard

# phase N: a few small files changed and synced.
phase() {
  head -c $((4096 * (1 + $1 % 5))) /dev/urandom >"mnt/f$(($1 % 40))"
  sync
}
for i in $(seq 1 60); do phase "$i"; done
head -c 256K /dev/urandom >mnt/victim
sync
sha256sum <mnt/victim | cut -d' ' -f1 >victim.sum
"$REWIND_CLI" mark disk.rewind victim-written >/dev/null
for i in $(seq 61 120); do phase "$i"; done

# The raw write: the victim's third block, through NBD, while the file system is
# frozen, so that it is the record right after the mark.
phys=$(filefrag -v -b4096 mnt/victim | awk '$1 == "0:" { sub(/\.\./, "", $4); print $4 }')
[ -n "$phys" ] || fail "no extent of the victim: $(filefrag -v mnt/victim)"
fsfreeze -f mnt
cleanup "fsfreeze -u $workdir/mnt 2>/dev/null || true"
mark_seq=$("$REWIND_CLI" mark disk.rewind before-raw | sed -n 's/.*seq \([0-9]*\).*/\1/p')
qemu-io -f raw -c "write -P 0xab $(((phys + 2) * 4096)) 4096" "$(uri_of "$sock")" >/dev/null
raw_seq=$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')
fsfreeze -u mnt
[ "$raw_seq" -eq $((mark_seq + 1)) ] || fail "the raw write is seq $raw_seq, after mark seq $mark_seq"
for i in $(seq 121 200); do phase "$i"; done
unmount_ext4
stop_server
sums_before=$(find disk.rewind disk.img -type f -print0 | sort -z | xargs -0 sha256sum)

# The check: mount the point, compare the victim. 0 good, 1 bad.
cat >check.sh <<'CHECK'
#!/usr/bin/env bash
set -u
d=$(mktemp -d /tmp/rewind-check.XXXXXX)
mkdir "$d/fuse" "$d/mnt"
nbdfuse "$d/fuse/disk" "$REWIND_URI" &
fuse=$!
loop=
finish() {
  umount "$d/mnt" 2>/dev/null
  [ -n "$loop" ] && losetup -d "$loop"
  fusermount3 -u "$d/fuse" 2>/dev/null
  wait "$fuse" 2>/dev/null
  rm -rf "$d"
}
trap finish EXIT
for _ in $(seq 100); do [ -e "$d/fuse/disk" ] && break; sleep 0.05; done
loop=$(losetup -f --show "$d/fuse/disk") || exit 255
mount "$loop" "$d/mnt" || exit 255
[ "$(sha256sum <"$d/mnt/victim" | cut -d' ' -f1)" = "$(cat "$CHECK_SUM")" ]
CHECK
chmod +x check.sh
export CHECK_SUM=$workdir/victim.sum

"$REWIND_CLI" bisect disk.rewind --good mark:victim-written --json --run ./check.sh \
  >bisect.json 2>bisect.log || fail "rewind bisect: $(tail -n 3 bisect.log)"
cat bisect.log
python3 - "$raw_seq" "$((raw_seq - 1))" "$(((phys + 2) * 4096))" bisect.json <<'PY' ||
import json, math, sys
raw, before, offset = map(int, sys.argv[1:4])
r = json.load(open(sys.argv[4]))
assert r["points"] >= 200, f"only {r['points']} points to bisect"
assert r["first_bad_seq"] == raw, f"first bad seq {r['first_bad_seq']}, the raw write is {raw}"
assert r["last_good_seq"] == before, f"last good seq {r['last_good_seq']}, not {before}"
assert r["exact"] and not r["skipped"], r["skipped"]
bound = math.ceil(math.log2(r["points"])) + 2
assert len(r["steps"]) <= bound, f"{len(r['steps'])} steps, more than {bound}"
assert [x for x in r["records"] if x["seq"] == raw] == [
    {"seq": raw, "time": r["first_bad_time"], "type": "WRITE", "offset": offset, "length": 4096}
], r["records"]
assert r["mark_before"]["name"] == "before-raw", r["mark_before"]
print(f"found seq {raw} among {r['points']} points in {len(r['steps'])} steps "
      f"({sum(s['seconds'] for s in r['steps']):.1f}s)")
PY
  fail "the bisection's result is wrong: $(cat bisect.json)"

# Points the check cannot judge (every third seq) are stepped around; the answer still
# brackets the raw write, and says which skipped points keep it from being exact.
cat >skip.sh <<'SKIP'
#!/usr/bin/env bash
# The two ends are judged: bisect checks them first.
[ $((REWIND_SEQ % 3)) -eq 0 ] && [ "$REWIND_SEQ" -ne "$FIRST_GOOD" ] &&
  [ "$REWIND_SEQ" -ne "$LAST" ] && exit 125
exec ./check.sh
SKIP
chmod +x skip.sh
FIRST_GOOD=$("$REWIND_CLI" log --json disk.rewind |
  python3 -c 'import json,sys; print([m["seq"] for m in json.load(sys.stdin)["marks"] if m["name"] == "victim-written"][0])')
LAST=$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')
export FIRST_GOOD LAST
"$REWIND_CLI" bisect disk.rewind --good mark:victim-written --run ./skip.sh >skip.txt 2>&1 ||
  fail "rewind bisect with skips: $(tail -n 3 skip.txt)"
grep -q " skip (exit 125" skip.txt || fail "no point was skipped: $(cat skip.txt)"
good=$(sed -n 's/^last good: seq \([0-9]*\).*/\1/p' skip.txt)
bad=$(sed -n 's/^first bad: seq \([0-9]*\).*/\1/p' skip.txt)
[ "$good" -lt "$raw_seq" ] && [ "$bad" -ge "$raw_seq" ] ||
  fail "with skips: last good $good, first bad $bad, around the raw write $raw_seq?"
grep -q "seq $raw_seq .* WRITE offset $(((phys + 2) * 4096)) length 4096" skip.txt ||
  fail "with skips, the raw write is not listed: $(cat skip.txt)"
echo "with skips: seq $good..$bad"

# A check that exits 200 stops the bisection: one line, exit 1.
expect_cli 1 "the check exited 200 at seq" bisect disk.rewind --good mark:victim-written \
  --run "exit 200"
expect_cli 2 "give a --good point earlier than the --bad one" bisect disk.rewind \
  --good mark:before-raw --bad mark:victim-written --run true
expect_cli 1 "the check says the bad point" bisect disk.rewind --good mark:victim-written \
  --run true

# Nothing left: no nbdkit, no socket directory, no loop device on an nbdfuse file, and
# the history as it was.
pgrep -f "rewind-bisect" && fail "something of the bisection is still running"
ls -d /tmp/rewind-bisect.* /tmp/rewind-check.* 2>/dev/null && fail "a directory was left"
losetup -a | grep -q rewind-check && fail "a loop device was left attached"
[ "$(find disk.rewind disk.img -type f -print0 | sort -z | xargs -0 sha256sum)" = "$sums_before" ] ||
  fail "the bisection changed the journal or the image"
echo "PASS"
