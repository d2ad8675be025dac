#!/usr/bin/env bash
# Bounded history end to end: 30 seconds of random writes through the real plugin,
# with marks, each state captured with nbdcopy; then `rewind compact` and `rewind
# rebase`. Every mark and every window boundary restores byte-identical to its capture
# before and after each step (or, before the new base, is refused naming the range);
# the journal's size is printed at each step.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3

cd "$workdir"
truncate -s 32M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
gran=3  # seconds: the compaction window
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M segment-age=2s
now_ns() { date +%s%N; }

# qemu-io arguments for N random writes and zeroes, 4-64 KiB, most in a hot 4 MiB.
random_ops() {
  python3 - "$1" "$2" <<'EOF'
import random, sys
rng = random.Random(int(sys.argv[2]))
for _ in range(int(sys.argv[1])):
    area = 4 << 20 if rng.random() < 0.8 else 32 << 20
    length = rng.randrange(1, 17) * 4096
    offset = rng.randrange(0, (area - length) // 4096 + 1) * 4096
    if rng.random() < 0.1:
        print(f"-c\nwrite -z {offset} {length}")
    else:
        print(f"-c\nwrite -P {rng.randrange(1, 256)} {offset} {length}")
EOF
}
# write_phase SEED: 60 random requests, then a FLUSH.
write_phase() {
  local args=()
  mapfile -t args < <(random_ops 60 "$1")
  qemu-io -f raw -t writeback "${args[@]}" -c flush "$uri" >/dev/null
}

# Each window of $gran seconds: two flushed phases, a capture after each, a mark after
# the first in every other window; then a wait past the window's end, whose state is
# the second capture. The run goes on for 30 seconds, and longer on a loaded machine
# (a window then takes longer) until it has 6 windows and 3 marks, for at most 150 s.
declare -A boundary mark
start=$(now_ns)
w=0
while [ "$(now_ns)" -lt $((start + 30 * 1000000000)) ] ||
  { [ "${#boundary[@]}" -lt 6 ] || [ "${#mark[@]}" -lt 3 ]; } &&
  [ "$(now_ns)" -lt $((start + 150 * 1000000000)) ]; do
  w=$((w + 1))
  write_phase $((w * 2))
  if [ $((w % 2)) -eq 0 ]; then
    nbdcopy "$uri" "mark$w.img"
    "$REWIND_CLI" mark disk.rewind "m$w" >/dev/null
    mark[m$w]=mark$w.img
  fi
  write_phase $((w * 2 + 1))
  nbdcopy "$uri" "window$w.img"
  # The next boundary k*gran s after the epoch; no write happens until it has passed.
  b=$((($(now_ns) / (gran * 1000000000) + 1) * gran * 1000000000))
  while [ "$(now_ns)" -le $((b + 50000000)) ]; do sleep 0.05; done
  boundary[$b]=window$w.img
done
stop_server
[ "${#boundary[@]}" -ge 6 ] || fail "only ${#boundary[@]} windows in 150 s"
[ "${#mark[@]}" -ge 3 ] || fail "only ${#mark[@]} marks in 150 s"

journal_bytes() { "$REWIND_CLI" info --json disk.rewind | json_field '["journal_bytes"]'; }
# check_all WHEN [BASE_NS [EVERY]]: every boundary (a multiple of EVERY seconds, if
# given) and mark restores as captured; those before the base (a rebase's), if given,
# are refused naming the restorable range.
check_all() {
  local when=$1 base_ns=${2:-0} every=${3:-$gran} b n
  for b in "${!boundary[@]}"; do
    [ $((b % (every * 1000000000))) -eq 0 ] || continue
    t=$(python3 -c "import datetime,sys; print(datetime.datetime.fromtimestamp($b / 1e9, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ'))")
    if [ "$b" -lt "$base_ns" ]; then
      expect_cli 1 "before the oldest restorable point; the restorable range is" \
        restore disk.rewind --at "$t" -o gone.img
      continue
    fi
    "$REWIND_CLI" restore disk.rewind --at "$t" -o at.img >/dev/null 2>&1 ||
      fail "$when: restore at the window boundary $t failed"
    cmp -s at.img "${boundary[$b]}" || fail "$when: the state at $t is not ${boundary[$b]}"
    rm -f at.img
  done
  for n in "${!mark[@]}"; do
    if "$REWIND_CLI" restore disk.rewind --mark "$n" -o at.img >/dev/null 2>"restore.err"; then
      cmp -s at.img "${mark[$n]}" || fail "$when: mark $n does not restore ${mark[$n]}"
      rm -f at.img
    else
      [ "$base_ns" -gt 0 ] && grep -q "no mark named '$n'" restore.err ||
        fail "$when: mark $n: $(cat restore.err)"
    fi
  done
}

check_all "before compaction"
before=$(journal_bytes)
out=$("$REWIND_CLI" compact disk.rewind --before now --granularity ${gran}s)
echo "$out"
echo "$out" | grep -q "thinned out" || fail "compact said: $out"
after=$(journal_bytes)
echo "journal: $before bytes before compaction, $after after"
[ "$after" -lt "$before" ] || fail "compaction did not shrink the journal ($before -> $after)"
check_all "after compaction"
"$REWIND_CLI" info disk.rewind | grep -q "one per ${gran}\.0s" || fail "info shows no ${gran} s tier"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after compaction"
check_replay disk.rewind disk.img
# Once more at the same granularity: nothing to do.
"$REWIND_CLI" compact disk.rewind --before now --granularity ${gran}s | grep -q "nothing to compact" ||
  fail "a second compaction at the same granularity found work"

# Rebase to a mark in the middle: later points restore as before, earlier are refused.
names=$(printf '%s\n' "${!mark[@]}" | sort -t m -k 2 -n)
middle=$(echo "$names" | sed -n "$(($(echo "$names" | wc -l) / 2 + 1))p")
"$REWIND_CLI" rebase disk.rewind --before "mark:$middle" >/dev/null
base_ns=$("$REWIND_CLI" info --json disk.rewind | json_field '["first_time_ns"]')
[ "$("$REWIND_CLI" info --json disk.rewind | json_field '["base_seq"]')" -gt 0 ] ||
  fail "the rebase to mark $middle folded nothing"
rebased=$(journal_bytes)
echo "journal: $rebased bytes after the rebase to mark $middle"
[ "$rebased" -lt "$after" ] || fail "the rebase did not shrink the journal"
check_all "after the rebase" "$base_ns"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after the rebase"
check_replay disk.rewind disk.img

# rewind retain: the plugin's policy applied to the stopped volume, here a coarser
# tier over everything; every mark still restores, and bad policies change nothing.
expect_cli 2 "no policy given; give --retain, --retain-coarse or --journal-max" retain disk.rewind
expect_cli 2 "--retain-coarse: tier '1d' has no ':'" retain disk.rewind --retain-coarse 1d
expect_cli 2 "retain 2d00h is not shorter than the first retain-coarse tier's age (1d00h)" \
  retain disk.rewind --retain 2d --retain-coarse 1d:1m
cp disk.rewind/MANIFEST manifest.before
"$REWIND_CLI" retain disk.rewind --retain-coarse 1h:1s | grep -q "^0 segments folded or compacted" ||
  fail "a tier finer than the journal's changed it"
cmp -s manifest.before disk.rewind/MANIFEST || fail "retain with nothing due changed the manifest"
"$REWIND_CLI" retain disk.rewind --retain-coarse 1h:6s >retain.out
grep -q "segments folded or compacted" retain.out || fail "retain said: $(cat retain.out)"
[ "$("$REWIND_CLI" info --json disk.rewind | json_field '["tiers"][-1]["granularity_ns"]')" -eq 6000000000 ] ||
  fail "retain did not compact to 6 s: $("$REWIND_CLI" info disk.rewind)"
echo "journal: $(journal_bytes) bytes after rewind retain --retain-coarse 1h:6s"
check_all "after rewind retain" "$base_ns" 6
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify after retain"
echo "PASS: compact"
