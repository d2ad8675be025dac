#!/usr/bin/env bash
# coalesce=on with the real plugin: rewrites of the same blocks between flushes are
# superseded (`rewind log` counts them), the journal is smaller than the bytes written,
# and every flushed state restores as captured with nbdcopy; a restore between flushes
# says which exact point it gave instead.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy

cd "$workdir"
truncate -s 8M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind coalesce=on flush-interval=1h
uri=$(uri_of "$sock")
# Three rounds, each rewriting the same 1 MiB ten times and then flushing.
for round in 1 2 3; do
  args=()
  for i in $(seq 1 10); do args+=(-c "write -P $((round * 16 + i)) 0 1M"); done
  qemu-io -f raw -t writeback "${args[@]}" -c flush "$uri" >/dev/null
  nbdcopy "$uri" "round$round.img"
done
stop_server

"$REWIND_CLI" log disk.rewind >log.txt
grep -q "27 writes coalesced away" log.txt || fail "expected 27 superseded writes: $(cat log.txt)"
journal=$("$REWIND_CLI" info --json disk.rewind | python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_bytes"])')
[ "$journal" -lt $((4 << 20)) ] || fail "journal of $journal bytes for 3 MiB that survived"

# Each flush point restores exactly.
last=$("$REWIND_CLI" info --json disk.rewind | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])')
[ "$last" -eq 30 ] || fail "expected 30 records, found $last"
for round in 1 2 3; do
  "$REWIND_CLI" restore disk.rewind --seq $((round * 10)) -o "r$round.img" >/dev/null
  cmp "r$round.img" "round$round.img" || fail "round $round does not restore exactly"
done
# A point between flushes gives the last exact point before it, and says so.
"$REWIND_CLI" restore disk.rewind --seq 15 -o mid.img >out.txt
grep -q "seq 15 lies where writes were coalesced (coalesce=on)" out.txt || fail "no note: $(cat out.txt)"
cmp mid.img round1.img || fail "seq 15 did not give the state at seq 10"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify"
check_replay disk.rewind disk.img
echo "PASS: coalesce"
