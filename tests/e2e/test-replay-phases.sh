#!/usr/bin/env bash
# Point in time, end to end: a real client writes distinct patterns in phases
# separated in time, with marks between them; nbdcopy of the live export after each
# phase is the ground truth. Restores at a time inside each gap, at each phase's last
# seq and at each mark (reading what the image still holds from it, and the journal
# alone), restore --to into a live NBD export, and the point-in-time export (nbdkit ...
# mark=, with image-reads on and off, and rewind serve) all equal it byte for byte.
source "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy qemu-io python3

cd "$workdir"
truncate -s 64M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
start_server "$sock" image=disk.img journal=disk.rewind flush-interval=20ms
utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

for phase in 1 2 3 4; do
  # Overlapping writes, zeroes and trims, different in every phase.
  qemu-io -f raw -t writeback \
    -c "write -P $((phase * 17)) $((phase * 3))M 5M" \
    -c "write -P $((phase * 29)) $((phase * 512 + 100))k 300k" \
    -c "write -z $(((5 - phase) * 4))M 1M" \
    -c "discard $((phase * 8 + 20))M 2M" \
    -c flush "$uri" >/dev/null
  nbdcopy "$uri" "truth$phase.img"
  "$REWIND_CLI" mark disk.rewind "phase-$phase" >mark.out || fail "mark phase-$phase: $(cat mark.out)"
  grep -q "mark phase-$phase at seq" mark.out || fail "mark output: $(cat mark.out)"
  seq_of[$phase]=$("$REWIND_CLI" log --json disk.rewind | json_field '["marks"][-1]["seq"]')
  sleep 0.3
  gap[$phase]=$(utc_now)
  sleep 0.3
done
stop_server
for p in 1 2 3; do
  cmp -s "truth$p.img" "truth$((p + 1)).img" && fail "phases $p and $((p + 1)) are identical: the test proves nothing"
done

for phase in 1 2 3 4; do
  "$REWIND_CLI" restore disk.rewind --at "${gap[$phase]}" -o "at$phase.img" >/dev/null
  cmp "at$phase.img" "truth$phase.img" || fail "restore --at ${gap[$phase]} differs from phase $phase"
  "$REWIND_CLI" restore disk.rewind --mark "phase-$phase" -o "mark$phase.img" >/dev/null
  cmp "mark$phase.img" "truth$phase.img" || fail "restore --mark phase-$phase differs"
  # The phase's last record is the one before its mark.
  last=$((seq_of[$phase] - 1))
  "$REWIND_CLI" restore disk.rewind --seq "$last" -o "seq$phase.img" >/dev/null
  cmp "seq$phase.img" "truth$phase.img" || fail "restore --seq $last differs from phase $phase"
  # Everything from the journal, nothing from the image: the same bytes.
  "$REWIND_CLI" restore disk.rewind --seq "$last" --no-image-reads -o "journal$phase.img" >journal.out
  cmp "journal$phase.img" "truth$phase.img" || fail "restore --no-image-reads differs from phase $phase"
  grep -q "from the image" journal.out && fail "restore --no-image-reads read the image: $(cat journal.out)"
  rm -f "at$phase.img" "mark$phase.img" "seq$phase.img" "journal$phase.img"
done
# The newest state is all in the image: a restore of it says so.
"$REWIND_CLI" restore disk.rewind -o newest.img >newest.out
cmp newest.img truth4.img || fail "restore of the newest state differs from phase 4"
grep -q "of it read from the image $workdir/disk.img, checked against the journal's checksums" \
  newest.out || fail "the newest state was not read from the image: $(cat newest.out)"
rm -f newest.img

# The point-in-time export, read with nbdcopy, without materialising anything: with
# what the image still holds read from it (the default), and from the journal alone.
view=$workdir/view.sock
for reads in on off; do
  rm -f "$view"
  nbdkit -v -f -U "$view" "$REWIND_PLUGIN" journal=disk.rewind mark=phase-2 image-reads=$reads \
    2>view.log &
  view_pid=$!
  cleanup "kill $view_pid"
  for i in $(seq 1 100); do [ -S "$view" ] && break; sleep 0.05; done
  nbdcopy "$(uri_of "$view")" view2.img
  cmp view2.img truth2.img || fail "point-in-time export at phase-2 (image-reads=$reads) differs"
  nbdinfo --can write "$(uri_of "$view")" && fail "the point-in-time export is writable"
  kill "$view_pid"
  wait "$view_pid" 2>/dev/null || true
  rm -f view2.img
done
# With the image gone, the export says that it reads the journal alone, and serves the
# same bytes.
mv disk.img away.img
rm -f "$view"
nbdkit -v -f -U "$view" "$REWIND_PLUGIN" journal=disk.rewind mark=phase-2 2>view.log &
view_pid=$!
cleanup "kill $view_pid"
for i in $(seq 1 100); do [ -S "$view" ] && break; sleep 0.05; done
nbdcopy "$(uri_of "$view")" view2.img
cmp view2.img truth2.img || fail "point-in-time export at phase-2 without the image differs"
grep -q "reading everything from the journal: .*$workdir/disk.img" view.log ||
  fail "no note that the export reads the journal alone: $(grep rewind view.log)"
kill "$view_pid"
wait "$view_pid" 2>/dev/null || true
mv away.img disk.img

# rewind serve prints a URI that serves the same bytes.
"$REWIND_CLI" serve disk.rewind --at "${gap[3]}" --socket "$workdir/serve.sock" >serve.out &
serve_pid=$!
cleanup "kill $serve_pid"
for i in $(seq 1 100); do grep -q '^nbd+unix' serve.out 2>/dev/null && break; sleep 0.05; done
nbdcopy "$(grep '^nbd+unix' serve.out)" serve3.img
cmp serve3.img truth3.img || fail "rewind serve --at gap 3 differs"
kill -TERM "$serve_pid"
wait "$serve_pid" 2>/dev/null || true

# restore --to writes into a live NBD export.
truncate -s 64M target.img
tsock=$workdir/target.sock
nbdkit -f -U "$tsock" file target.img 2>>server.log &
target_pid=$!
cleanup "kill $target_pid"
for i in $(seq 1 100); do [ -S "$tsock" ] && break; sleep 0.05; done
"$REWIND_CLI" restore disk.rewind --mark phase-1 --to "$(uri_of "$tsock")" >/dev/null
kill "$target_pid"
wait "$target_pid" 2>/dev/null || true
cmp target.img truth1.img || fail "restore --to nbd+unix differs from phase 1"

# diff between two marks lists what phase 3 and 4 changed and nothing else.
"$REWIND_CLI" diff disk.rewind --from mark:phase-2 --to mark:phase-4 --json >diff.json
python3 - "$workdir" <<'PY'
import json, sys
d = json.load(open(sys.argv[1] + "/diff.json"))
a = open(sys.argv[1] + "/truth2.img", "rb").read()
b = open(sys.argv[1] + "/truth4.img", "rb").read()
covered = bytearray(len(a))
for e in d["extents"]:
    covered[e["offset"]:e["offset"] + e["length"]] = b"\1" * e["length"]
bad = [i for i in range(0, len(a), 4096) if a[i:i+4096] != b[i:i+4096] and 0 in covered[i:i+4096] and
       any(a[j] != b[j] and not covered[j] for j in range(i, i + 4096))]
if bad:
    sys.exit(f"diff misses a change at offset {bad[0]}")
PY
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify --image after the run"
echo "PASS: point-in-time restores, export, serve, restore --to, diff"
