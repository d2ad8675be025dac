#!/usr/bin/env bash
# kill -9 at random moments, over many rounds: a libnbd client writes numbered 4 KiB
# blocks with a FLUSH after every 16 and logs each completed FLUSH; the server is
# killed while it writes. After each restart every flushed block reads back exactly,
# every later one is either exactly right or untouched, and `rewind verify --image`
# passes. The next round starts again after the last flushed block.
source "$(dirname "$0")/functions.sh"
requires nbdkit
: "${REWIND_BLOCKS:?set by CTest: path of rewind-test-blocks}"
rounds=${KILL9_ROUNDS:-10}

cd "$workdir"
truncate -s 256M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
flushed=0 sent=0
touch flushes.log
for round in $(seq 1 "$rounds"); do
  start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M \
    flush-interval=$((RANDOM % 40 + 1))ms
  "$REWIND_BLOCKS" write "$uri" $((flushed + 1)) 100000 flushes.log >sent.out 2>/dev/null &
  writer=$!
  sleep "$((RANDOM % 40 + 5))e-2"
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  wait "$writer" || true
  s=$(cat sent.out)
  [ -n "$s" ] && [ "$s" -gt "$sent" ] && sent=$s
  f=$(tail -n 1 flushes.log)
  [ -n "$f" ] && [ "$f" -gt "$flushed" ] && flushed=$f
  start_server "$sock" image=disk.img journal=disk.rewind
  "$REWIND_BLOCKS" check "$uri" "$flushed" "$sent" ||
    fail "round $round: a flushed block is lost or a block is torn after kill -9"
  stop_server
  "$REWIND_CLI" verify disk.rewind --image disk.img >verify.out 2>&1 ||
    { cat verify.out; fail "round $round: rewind verify --image failed after kill -9"; }
done
[ "$flushed" -gt $((rounds * 16)) ] || fail "too few blocks flushed ($flushed) for the test to mean much"
echo "PASS: $rounds kill -9 rounds, $flushed blocks flushed, none lost"
