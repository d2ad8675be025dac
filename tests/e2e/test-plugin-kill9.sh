#!/usr/bin/env bash
# kill -9 after a flush: the restarted server redoes the journal and serves every
# flushed write; the image then equals replay(base, journal).
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io

cd "$workdir"
truncate -s 32M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
for round in 1 2 3; do
  start_server "$sock" image=disk.img journal=disk.rewind flush-interval=1h
  qemu-io -f raw -t writeback -c "write -P $((round * 16)) $((round))M 1M" -c flush \
    -c "write -P 0xee $((round + 10))M 1M" "$uri" >/dev/null
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null || true
done
start_server "$sock" image=disk.img journal=disk.rewind
for round in 1 2 3; do
  qemu-io -f raw -c "read -P $((round * 16)) $((round))M 1M" "$uri" | grep -q 'read 1048576/1048576' ||
    fail "flushed write of round $round lost after kill -9"
done
stop_server
check_replay disk.rewind disk.img
echo "PASS: kill -9 recovery"
