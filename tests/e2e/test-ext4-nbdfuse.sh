#!/usr/bin/env bash
# A real file system on a rewind export: nbdfuse + loop + ext4. Copies files in,
# syncs, unmounts, stops the server; then e2fsck is clean, the files read back from
# the image with the same checksums, and replaying the journal reproduces the image.
source "$(dirname "$0")/functions.sh"
requires nbdkit nbdfuse losetup mkfs.ext4 e2fsck debugfs sha256sum
[ "$(id -u)" -eq 0 ] || fail "needs root (loop devices and mount)"

cd "$workdir"
truncate -s 256M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind flush-interval=50ms

mount_ext4 "$sock" -E nodiscard

# Files of many sizes, some in directories, one rewritten and one deleted.
mkdir -p mnt/a/b
for i in $(seq 1 20); do head -c $((i * 37 * 1024)) /dev/urandom > "mnt/a/f$i"; done
head -c 20M /dev/urandom > mnt/a/b/big
head -c 1M /dev/urandom > mnt/gone
cp -r /usr/share/doc/nbdkit mnt/docs 2>/dev/null || mkdir mnt/docs
head -c 3M /dev/urandom > mnt/a/f3
sync
rm mnt/gone
sync
(cd mnt && find . -type f -print0 | sort -z | xargs -0 sha256sum) > sums.txt
unmount_ext4
stop_server

e2fsck -fn disk.img >e2fsck.log 2>&1 || { cat e2fsck.log; fail "e2fsck found problems"; }
# Every file, read straight from the image, has the checksum it had when mounted.
while read -r sum path; do
  got=$(debugfs -R "cat /${path#./}" disk.img 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ "$got" = "$sum" ] || fail "checksum of $path differs in the image"
done < sums.txt
check_replay disk.rewind disk.img

# rewind info reports the history the file system left.
"$REWIND_CLI" info disk.rewind
info=$("$REWIND_CLI" info --json disk.rewind)
records=$(echo "$info" | json_field '["records"]')
bytes=$(echo "$info" | json_field '["journal_bytes"]')
first=$(echo "$info" | json_field '["first_time_ns"]')
last=$(echo "$info" | json_field '["last_time_ns"]')
logged=$("$REWIND_CLI" log --json disk.rewind | json_field '["segments"][-1]["last_seq"]')
written=$("$REWIND_CLI" log --json disk.rewind | python3 -c 'import json,sys; print(sum(s["bytes_written"] for s in json.load(sys.stdin)["segments"]))')
[ "$records" -gt 0 ] && [ "$records" -eq "$logged" ] || fail "info says $records records, log ends at seq $logged"
[ "$written" -gt $((20 * 1024 * 1024)) ] || fail "only $written bytes written in the journal"
[ "$bytes" -gt "$written" ] || fail "journal of $bytes bytes cannot hold $written bytes written"
[ "$last" -gt "$first" ] || fail "time range $first..$last"
"$REWIND_CLI" info disk.rewind | grep -q "^records     $records in" || fail "text info lacks the record count"
echo "PASS: ext4 on nbdfuse: $records records, $written bytes written"
