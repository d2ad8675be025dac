#!/usr/bin/env bash
# Retention applies to a volume's copy in a bucket too (a real RADOS Gateway): what the
# plugin's retention folds into the base or compacts in the local journal, the shipper
# does to the copy, storing the new objects, switching the manifest, then deleting the
# old ones. Afterwards the bucket's restorable range is the journal's, every promised
# point (the newest state, the marks, a seq after the new base) restores exactly from the
# bucket alone, a point before it is refused, `rewind verify s3://` passes, and the
# bucket holds no object its manifest (or base map) does not name.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
start_ceph
cd "$workdir"
s3 mb s3://vols >/dev/null
sock=$workdir/nbd.sock
nbd=$(uri_of "$sock")

# Every object under PREFIX is MANIFEST, a writer's claim, or named by the manifest or
# its base map.
check_all_named() {
  local uri=$1 volume base
  s3 get --force "$uri/MANIFEST" manifest >/dev/null
  volume=$(sed -n 's/^volume-id \(.*\)$/\1/p' manifest)
  base=$(sed -n 's/^base \S* seq \([0-9]*\) .*/\1/p' manifest)
  s3 get --force "$uri/base/$volume-$(printf %020d "$base")/MAP" basemap >/dev/null
  s3 ls -r "$uri/" | awk '{print $4}' >stored
  python3 - "$uri" <<'EOF' || fail "objects in $uri that nothing names: $(cat unnamed)"
import re, sys
uri = sys.argv[1]
manifest, base_map = open("manifest").read(), open("basemap").read()
volume = re.search(r"^volume-id (\w+)$", manifest, re.M).group(1)
base_seq = int(re.search(r"^base \S+ seq (\d+) ", manifest, re.M).group(1))
named = {f"{uri}/MANIFEST", f"{uri}/base/{volume}-{base_seq:020d}/MAP"}
for file, gen, index in re.findall(r"^sealed (\S+) gen (\d+) (index|no-index)$", manifest, re.M):
    named.add(f"{uri}/segments/{int(gen):020d}/{file}")
    if index == "index":
        named.add(f"{uri}/segments/{int(gen):020d}/{file[:-len('.seg')]}.idx")
for first, offset, gen in re.findall(r"^tail (\d+) offset (\d+) end \d+ gen (\d+)$", manifest, re.M):
    named.add(f"{uri}/tail/{int(gen):020d}/{int(first):020d}-{int(offset):020d}")
for offset, seq in re.findall(r"^data (\d+) \w+ (\d+)$", base_map, re.M):
    named.add(f"{uri}/base/{volume}-{int(seq):020d}/{int(offset):020d}")
unnamed = [k for k in open("stored").read().split() if k not in named and "/writers/" not in k]
open("unnamed", "w").write(" ".join(unnamed))
sys.exit(1 if unnamed else 0)
EOF
}

bucket_base() { s3 get "$1/MANIFEST" - 2>/dev/null | sed -n 's/^base \S* seq \([0-9]*\) .*/\1/p'; }

# --- journal-max: the plugin folds the oldest segments; so does the copy. ---
uri=s3://vols/max
truncate -s 8M disk.img
dd if=/dev/urandom of=disk.img bs=1M count=3 seek=2 conv=notrunc status=none
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M journal-max=4M ship=$uri
for i in $(seq 1 32); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 14) * 512))K 512K" -c flush "$nbd" >/dev/null
  [ "$i" -eq 30 ] && nbdcopy "$nbd" at30.img
done
nbdcopy "$nbd" newest.img
# Settled: the journal is back within journal-max and the copy has followed. The plugin
# may fold more than once (it keeps what the copy lacks), so a base the copy has reached
# once may still move on.
for _ in $(seq 1 200); do
  info=$("$REWIND_CLI" info --json disk.rewind)
  base=$(json_field '["base_seq"]' <<<"$info")
  held=$(json_field '["journal_bytes"]' <<<"$info")
  [ "$base" -gt 0 ] && [ "$held" -le $((4 << 20)) ] && [ "$(bucket_base $uri)" = "$base" ] &&
    [ "$(bucket_last $uri)" = 32 ] && break
  sleep 0.1
done
[ "$base" -gt 0 ] || fail "the plugin folded nothing: $("$REWIND_CLI" info disk.rewind)"
[ "$held" -le $((4 << 20)) ] ||
  fail "the journal holds $held bytes, over journal-max=4M: $("$REWIND_CLI" info disk.rewind)"
[ "$(bucket_base $uri)" = "$base" ] ||
  fail "the bucket's base is at seq $(bucket_base $uri), the journal's at $base: $(cat server.log)"
stop_server
rm -rf disk.rewind
"$REWIND_CLI" info $uri | grep -q "^restorable  seq $base " ||
  fail "the bucket's restorable range does not start at seq $base: $("$REWIND_CLI" info $uri)"
"$REWIND_CLI" restore $uri -o r.img >/dev/null
cmp -s r.img newest.img || fail "the bucket's newest state differs after the fold"
rm r.img
if [ "$base" -le 30 ]; then
  "$REWIND_CLI" restore $uri --seq 30 -o r.img >/dev/null
  cmp -s r.img at30.img || fail "seq 30 from the bucket differs after the fold"
  rm r.img
fi
expect_cli 1 "before the oldest restorable point; the restorable range is seq $base" \
  restore $uri --seq 1 -o old.img
"$REWIND_CLI" verify $uri >/dev/null || fail "verify $uri after the fold"
check_all_named $uri

# --- retain-coarse: the plugin compacts older history; so does the copy. ---
uri=s3://vols/coarse
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M segment-age=1s \
  retain=1s retain-coarse=3s:1s,1h:2s ship=$uri
for i in $(seq 1 16); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 3) * 512))K 512K" \
    -c "write -P $((i + 100)) $(((i % 3) * 512 + 128))K 64K" -c flush "$nbd" >/dev/null
  if [ $((i % 4)) -eq 0 ]; then
    nbdcopy "$nbd" "mark$i.img"
    "$REWIND_CLI" mark disk.rewind "m$i" >/dev/null
  fi
  sleep 0.4
done
coarsest() { "$REWIND_CLI" info --json "$1" | json_field '["tiers"][-1]["granularity_ns"]'; }
# (Up to a minute: the suite runs this next to other tests, each with its own cluster.)
for _ in $(seq 1 300); do
  [ "$(coarsest disk.rewind)" -eq 2000000000 ] && [ "$(coarsest $uri)" -eq 2000000000 ] && break
  sleep 0.2
done
[ "$(coarsest $uri)" -eq 2000000000 ] ||
  fail "the copy was not compacted to the 2 s tier: $("$REWIND_CLI" log $uri); the journal: \
$("$REWIND_CLI" log disk.rewind); $("$REWIND_CLI" info disk.rewind); $(cat server.log)"
nbdcopy "$nbd" newest.img
for _ in $(seq 1 100); do
  [ "$(bucket_last $uri)" = "$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')" ] && break
  sleep 0.1
done
stop_server
for i in 4 8 12 16; do
  "$REWIND_CLI" restore $uri --mark "m$i" -o r.img >/dev/null
  cmp -s r.img "mark$i.img" || fail "mark m$i does not restore its capture from the compacted copy"
  rm r.img
done
"$REWIND_CLI" restore $uri -o r.img >/dev/null
cmp -s r.img newest.img || fail "the compacted copy's newest state differs"
"$REWIND_CLI" verify $uri >/dev/null || fail "verify $uri after compaction"
check_all_named $uri

# --- rewind retain s3:// on a stopped volume's copy (no retention in the plugin). ---
uri=s3://vols/stopped
rm -rf disk.rewind
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M segment-age=1s ship=$uri
for i in $(seq 1 12); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 3) * 512))K 512K" -c flush "$nbd" >/dev/null
  if [ $((i % 4)) -eq 0 ]; then
    nbdcopy "$nbd" "stopped$i.img"
    "$REWIND_CLI" mark disk.rewind "s$i" >/dev/null
    date -u +%Y-%m-%dT%H:%M:%S.%NZ >"time-s$i"
  fi
  [ "$i" -eq 8 ] && sleep 3
done
for _ in $(seq 1 100); do
  [ "$(bucket_last $uri)" = "$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')" ] && break
  sleep 0.1
done
stop_server
# What an interrupted older writer left: a piece no manifest names.
echo orphan >orphan
s3 put orphan "$uri/tail/00000000000000000000/00000000000000000099-00000000000000000000" >/dev/null
before=$("$REWIND_CLI" info --json $uri | json_field '["base_seq"]')
# Keep every write of the last 2 s before the third mark: everything before it folds.
sleep 1
keep=$(python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat(open('time-s12').read().strip()[:26]); print(int((datetime.datetime.utcnow()-t).total_seconds()) + 2)")
"$REWIND_CLI" retain $uri --retain "${keep}s" >retain.out 2>&1 || fail "retain $uri: $(cat retain.out)"
grep -q "segments folded or compacted in $uri" retain.out || fail "retain said: $(cat retain.out)"
after=$("$REWIND_CLI" info --json $uri | json_field '["base_seq"]')
[ "$after" -gt "$before" ] || fail "rewind retain folded nothing in $uri: $(cat retain.out)"
rm -f r.img
"$REWIND_CLI" restore $uri --mark s12 -o r.img >/dev/null
cmp -s r.img stopped12.img || fail "mark s12 does not restore its capture after rewind retain"
rm r.img
"$REWIND_CLI" verify $uri >/dev/null || fail "verify $uri after rewind retain"
check_all_named $uri
# The volume's shipper goes on from the maintained copy.
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M ship=$uri
qemu-io -f raw -c "write -P 99 0 512K" -c flush "$nbd" >/dev/null
nbdcopy "$nbd" final.img
for _ in $(seq 1 100); do
  [ "$(bucket_last $uri)" = "$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')" ] && break
  sleep 0.1
done
[ "$("$REWIND_CLI" info --json disk.rewind | json_field '["ship"]["phase"]')" = records ] ||
  fail "the shipper did not take the maintained copy: $(cat server.log)"
stop_server
"$REWIND_CLI" restore $uri -o r.img >/dev/null
cmp -s r.img final.img || fail "the copy's newest state after shipping on differs"
echo "PASS: s3-retention"
