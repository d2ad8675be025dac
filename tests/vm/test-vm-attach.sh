#!/usr/bin/env bash
# scripts/rewind-attach in a Linux guest with the nbd module: the guest attaches an
# image from a disk the host gave it, makes ext4 on /dev/nbd0, writes and detaches,
# trying the helper's error paths on the way. The journal the host gets back passes
# `rewind verify --image`, and the image holds the files the guest wrote.
source "$(dirname "$0")/functions.sh"

cd "$workdir"
truncate -s 256M data.img
mkfs.ext4 -q data.img
boot_guest attach -drive "file=$workdir/data.img,format=raw,if=virtio,cache=unsafe"
wait_guest 180

# Take the image and its journal off the guest's disk.
mkdir out
debugfs -R "rdump / $workdir/out" data.img >/dev/null 2>&1 || fail "debugfs cannot read the data disk"
if compgen -G "out/sanitizer.*" >/dev/null; then
  cat out/sanitizer.* >&2
  fail "a sanitizer reported a problem in the guest's nbdkit"
fi
[ -f out/disk.img ] && [ -d out/disk.rewind ] || fail "no image and journal on the data disk"
[ ! -e out/other.rewind ] || fail "the failed attach left a journal"
"$REWIND_CLI" verify out/disk.rewind --image out/disk.img >verify.txt ||
  { cat verify.txt; fail "rewind verify --image of the detached volume"; }
"$REWIND_CLI" log --json out/disk.rewind | python3 -c '
import json, sys
s = json.load(sys.stdin)["segments"]
assert sum(x["writes"] for x in s) > 0 and all(x["sealed"] for x in s), s' ||
  fail "the journal holds no writes or was not closed cleanly"
reported file >files.txt
[ "$(wc -l <files.txt)" -eq 3 ] || fail "the guest reported $(wc -l <files.txt) files, expected 3"
e2fsck -fn out/disk.img >fsck.log 2>&1 || { cat fsck.log; fail "e2fsck -fn of the detached image"; }
check_files out/disk.img files.txt
echo "PASS: rewind-attach attached, served, detached; the journal and image agree"
