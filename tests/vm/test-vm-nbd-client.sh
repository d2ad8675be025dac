#!/usr/bin/env bash
# The Linux kernel's NBD client on a rewind export: a guest attaches the host's export
# as /dev/nbd0 with nbd-client (over a virtio-serial port, no IP networking), makes
# ext4 with discard, writes, deletes, runs fstrim (after a mark), syncs and detaches.
# The journal then holds WRITE and TRIM records and the flush points of the guest's
# syncs (rewind log), `rewind verify --image` passes, and the host reads the checksums
# the guest printed.
source "$(dirname "$0")/functions.sh"

cd "$workdir"
truncate -s 64M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind
boot_guest nbd -chardev "socket,id=nbd,path=$sock" -device virtserialport,chardev=nbd,name=nbdport
wait_console deleted 180
"$REWIND_CLI" mark disk.rewind before-fstrim >/dev/null || fail "rewind mark before fstrim"
send_guest marked
wait_guest 180
grep -q "REWIND-VM: detached" console.log || guest_failed "the guest did not detach"
stop_server

"$REWIND_CLI" log disk.rewind >log.txt
"$REWIND_CLI" log --json disk.rewind >log.json
total() { python3 -c "import json; print(sum(s['$1'] for s in json.load(open('log.json'))['segments']))"; }
writes=$(total writes) trims=$(total trims) flushes=$(total flush_points)
echo "journal: $writes WRITE, $trims TRIM, $flushes flush points"
[ "$writes" -gt 0 ] || { cat log.txt; fail "no WRITE records"; }
[ "$flushes" -gt 0 ] || { cat log.txt; fail "no flush points: no record a FLUSH waited for"; }
grep -q " TRIM" log.txt && grep -q " flush points" log.txt || { cat log.txt; fail "rewind log does not show them"; }
# mkfs discarded the whole disk, fstrim (after the mark) at least the 6 MiB of deleted
# files: TRIM records before and after the mark.
[ "$trims" -ge 2 ] || { cat log.txt; fail "$trims TRIM records, expected mkfs's and fstrim's"; }
trimmed_after=$("$REWIND_CLI" diff disk.rewind --from mark:before-fstrim --json | json_field '["bytes"]')
[ "$trimmed_after" -ge $((6 << 20)) ] || fail "only $trimmed_after bytes changed after the mark"

"$REWIND_CLI" verify disk.rewind --image disk.img >verify.txt || { cat verify.txt; fail "rewind verify --image"; }
reported file >files.txt
[ "$(wc -l <files.txt)" -eq 4 ] || fail "the guest reported $(wc -l <files.txt) files, expected 4"
e2fsck -fn disk.img >fsck.log 2>&1 || { cat fsck.log; fail "e2fsck -fn of the detached disk"; }
check_files disk.img files.txt
echo "PASS: nbd-client in a Linux guest: writes, trims and flushes journaled, files intact"
