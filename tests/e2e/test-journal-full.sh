#!/usr/bin/env bash
# The journal's file system fills up (a small ext4 on a loop device): writes and
# flushes fail with ENOSPC, the server stays up and keeps serving reads, nothing a
# completed flush covered is lost, and once space returns writes are taken again.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io mkfs.ext4 mount fallocate

cd "$workdir"
truncate -s 48M small.fs
mkfs.ext4 -q -m 0 small.fs
mkdir small
mount -o loop small.fs small
cleanup "umount -l $workdir/small"
truncate -s 64M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
start_server "$sock" image=disk.img journal=small/disk.rewind segment-size=1M flush-interval=10ms
qemu-io -f raw -t writeback -c 'write -P 1 0 4M' -c flush "$uri" >/dev/null || fail "first write"

# Leave less than a segment free.
avail=$(df --output=avail -B1 small | tail -n 1)
fallocate -l $((avail - 256 * 1024)) small/ballast
# The write is acknowledged (queued); the flush that would make it durable fails.
# (qemu-io reports a failed flush only by its exit status.)
qemu-io -f raw -t writeback -c 'write -P 2 8M 2M' "$uri" >/dev/null || fail "write before the flush"
if qemu-io -f raw -t writeback -c flush "$uri" >/dev/null 2>&1; then
  fail "flush on a full journal succeeded"
fi
qemu-io -f raw -t writeback -c 'write -P 3 16M 64k' "$uri" >full.out 2>&1 || true
grep -q "write failed: No space left on device" full.out || { cat full.out; fail "write on a full journal did not fail with ENOSPC"; }
grep -q "No space left on device" server.log || fail "the server did not log the ENOSPC"
kill -0 "$server_pid" || fail "the server died on ENOSPC"
# Reads go on: the flushed data, and the write acknowledged before the disk filled.
qemu-io -f raw -c 'read -P 1 0 4M' -c 'read -P 2 8M 2M' "$uri" | grep -c 'read 4194304/4194304\|read 2097152/2097152' |
  grep -q 2 || fail "reads while the journal is full"

rm small/ballast  # space returns
ok=
for i in $(seq 1 50); do
  if qemu-io -f raw -t writeback -c 'write -P 4 20M 64k' -c flush "$uri" 2>&1 | grep -q 'wrote 65536/65536'; then
    ok=1
    break
  fi
  sleep 0.1
done
[ -n "$ok" ] || fail "writes were not accepted again after space returned"
grep -q "writable again" server.log || fail "no log line saying writes resumed"
stop_server

for check in "-P 1 0 4M" "-P 2 8M 2M" "-P 0 16M 64k" "-P 4 20M 64k"; do
  qemu-io -f raw -c "read $check" disk.img | grep -q '^read ' || fail "image after recovery: read $check"
done
"$REWIND_CLI" verify small/disk.rewind --image disk.img >/dev/null || fail "verify after the disk was full"
check_replay small/disk.rewind disk.img
echo "PASS: a full journal disk fails writes with ENOSPC and recovers when space returns"
