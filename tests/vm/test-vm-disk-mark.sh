#!/usr/bin/env bash
# A VM whose virtio disk is a rewind export (QEMU's NBD block driver): the guest makes
# ext4 and writes files in two phases; between them it freezes the file system and
# the host inserts a mark. After the guest powers off, the restore at the mark passes
# `e2fsck -fn` and holds exactly the phase-one files; the newest state holds phase two.
source "$(dirname "$0")/functions.sh"

cd "$workdir"
boot_on_rewind_disk disk

wait_console frozen 120
"$REWIND_CLI" mark disk.rewind phase-1 >/dev/null || fail "rewind mark while the guest is frozen"
send_guest marked
wait_guest 120
stop_server

reported phase-1 >phase-1.txt
reported phase-2 >phase-2.txt
[ "$(wc -l <phase-1.txt)" -eq 6 ] || fail "the guest reported $(wc -l <phase-1.txt) phase-one files"

"$REWIND_CLI" restore disk.rewind --mark phase-1 -o at-mark.img >/dev/null
e2fsck -fn at-mark.img >fsck.log 2>&1 || { cat fsck.log; fail "e2fsck -fn at the mark"; }
check_files at-mark.img phase-1.txt

"$REWIND_CLI" restore disk.rewind -o newest.img >/dev/null
e2fsck -fn newest.img >fsck.log 2>&1 || { cat fsck.log; fail "e2fsck -fn of the newest state"; }
check_files newest.img phase-2.txt
cmp newest.img disk.img || fail "the newest restore differs from the served image"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "rewind verify --image"
# mkfs.ext4 discarded the disk: the guest's discards arrived as TRIM records.
trims=$("$REWIND_CLI" log --json disk.rewind |
  python3 -c 'import json,sys; print(sum(s["trims"] for s in json.load(sys.stdin)["segments"]))')
[ "$trims" -gt 0 ] || fail "no TRIM records: the guest's discards did not reach rewind"
echo "PASS: a VM's ext4 restored at the mark holds phase one, the newest state phase two"
