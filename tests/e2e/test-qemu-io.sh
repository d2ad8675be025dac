#!/usr/bin/env bash
# qemu-io and qemu-img against a rewind export: patterns, FUA, zero, discard, flush,
# a whole image converted in, read back after a restart.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io qemu-img nbdinfo

cd "$workdir"
truncate -s 64M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
start_server "$sock" image=disk.img journal=disk.rewind

qemu-io -f raw -t writeback \
  -c 'write -P 0xab 0 1M' \
  -c 'write -P 0xcd 512k 4k' \
  -c 'write -f -P 0x11 8M 64k' \
  -c 'write -z 2M 1M' \
  -c 'write -P 0x22 2M 4k' \
  -c 'discard 16M 1M' \
  -c flush "$uri" >/dev/null

# Reads see every acknowledged write, on a new connection.
qemu-io -f raw -c 'read -P 0xab 0 512k' -c 'read -P 0xcd 512k 4k' -c 'read -P 0xab 516k 508k' \
  -c 'read -P 0x11 8M 64k' -c 'read -P 0x22 2M 4k' -c 'read -P 0 2052k 1020k' \
  -c 'read -P 0 16M 1M' "$uri" | grep -q 'read 1048576/1048576' || fail "read-back mismatch"
if qemu-io -f raw -c 'read -P 0x99 0 4k' "$uri" 2>&1 | grep -q 'read 4096/4096'; then
  fail "qemu-io -P accepted a wrong pattern, so the checks above prove nothing"
fi

# A whole image written by qemu-img lands intact.
head -c 8M /dev/urandom > src.img
truncate -s 64M src.img
qemu-img convert -n -f raw -O raw src.img "$uri"
qemu-img compare -f raw -F raw src.img "$uri" >/dev/null || fail "qemu-img compare after convert"
stop_server

cmp src.img disk.img || fail "image after shutdown differs from what was written"
check_replay disk.rewind disk.img

# After a restart the same bytes are served.
start_server "$sock" image=disk.img journal=disk.rewind
qemu-img compare -f raw -F raw src.img "$uri" >/dev/null || fail "compare after restart"
stop_server
echo "PASS: qemu-io / qemu-img"
