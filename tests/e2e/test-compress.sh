#!/usr/bin/env bash
# compress=zstd: text, random and repetitive data written by qemu-io through the plugin
# restore at every mark as nbdcopy read them from the live export; the random data is
# stored as it is and the rest compressed, so the journal is smaller than what was
# written; the volume goes on with compress=off over the same journal (both forms in
# one journal), verifies, and ships to a rewind-server and to a bucket of a real S3
# server, which keep the records compressed and restore them alike.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
truncate -s 64M disk.img
uri=$(uri_of "$workdir/disk.sock")
# 8 MiB of text (the Python library's sources), 4 MiB that does not compress.
# (head stops reading at 8 MiB, which ends cat with SIGPIPE: the size is checked instead.)
find /usr/lib/python3* -name '*.py' -print0 | sort -z | xargs -0 cat 2>/dev/null | head -c 8M \
  >text.bin || true
[ "$(stat -c %s text.bin)" -eq $((8 << 20)) ] || fail "not 8 MiB of text to write"
head -c 4M /dev/urandom >random.bin

# mark NAME: a mark, and the export's contents at it (ground truth).
mark() {
  "$REWIND_CLI" mark disk.rewind "$1" >/dev/null
  nbdcopy "$uri" "truth-$1.img"
}
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind compress=zstd segment-size=4M
qemu-io -f raw -t writeback -c "write -s text.bin 0 8M" -c flush "$uri" >/dev/null
mark text
qemu-io -f raw -t writeback -c "write -s random.bin 8M 4M" -c flush "$uri" >/dev/null
mark random
qemu-io -f raw -t writeback -c "write -P 0x5a 16M 8M" -c "write -s text.bin 30000 12345" \
  -c "write -z 4M 1M" -c flush "$uri" >/dev/null
mark mixed
stop_server

info() { "$REWIND_CLI" info --json "$1" | json_field "$2"; }
written=$(((8 << 20) + (4 << 20) + (8 << 20) + 12345))
journal=$(info disk.rewind '["journal_bytes"]')
echo "journal: $journal bytes for $written bytes written"
[ "$journal" -ge $((4 << 20)) ] || fail "the journal ($journal bytes) holds less than the random data"
[ "$journal" -lt $((written / 2)) ] || fail "the journal ($journal bytes) is not compressed"
# rewind log counts the compressed records and what they take.
"$REWIND_CLI" log --json disk.rewind | python3 -c '
import json, sys
segs = json.load(sys.stdin)["segments"]
n, covered, stored = (sum(s[k] for s in segs) for k in ("compressed", "compressed_bytes", "compressed_stored"))
assert n > 0 and 0 < stored < covered / 2, (n, covered, stored)
' || fail "rewind log --json does not count the compressed records"
"$REWIND_CLI" log disk.rewind | grep -q "WRITE compressed: " || fail "rewind log shows no compressed records"
for m in text random mixed; do
  "$REWIND_CLI" restore disk.rewind --mark "$m" -o "restored-$m.img" >/dev/null
  cmp "restored-$m.img" "truth-$m.img" || fail "the restore at mark $m differs from the export"
  rm -f "restored-$m.img"
done
check_replay disk.rewind disk.img

# The same volume without compression: new records stored as they are, old ones read.
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind compress=off segment-size=4M
qemu-io -f raw -t writeback -c "write -s text.bin 40M 8M" -c flush "$uri" >/dev/null
mark plain
stop_server
grown=$(($(info disk.rewind '["journal_bytes"]') - journal))
[ "$grown" -ge $((8 << 20)) ] || fail "with compress=off 8 MiB of text took $grown journal bytes"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify of the mixed journal"
for m in text random mixed plain; do
  "$REWIND_CLI" restore disk.rewind --mark "$m" -o "restored-$m.img" >/dev/null
  cmp "restored-$m.img" "truth-$m.img" || fail "mark $m differs after compress=off"
  rm -f "restored-$m.img"
done
# A point-in-time export of a compressed mark reads as the export did.
nbdkit -U - "$REWIND_PLUGIN" journal=disk.rewind mark=text --run 'nbdcopy "$uri" view.img'
cmp view.img truth-text.img || fail "the point-in-time export of mark text differs"

# Shipped to a rewind-server: stored as it came (compressed), restored alike.
printf 'tok vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback
"$REWIND_SHIP" disk.rewind 127.0.0.1 "$port" vol tok >/dev/null || fail "shipping"
stored=$(info store/vol '["journal_bytes"]')
local_bytes=$(info disk.rewind '["journal_bytes"]')
echo "store: $stored journal bytes, the volume's $local_bytes"
[ "$stored" -le $((local_bytes + local_bytes / 20)) ] ||
  fail "the store holds $stored journal bytes for the volume's $local_bytes"
"$REWIND_CLI" verify store/vol >/dev/null || fail "verify of the store's copy"
for m in text mixed plain; do
  "$REWIND_CLI" restore store/vol --mark "$m" -o "stored-$m.img" >/dev/null
  cmp "stored-$m.img" "truth-$m.img" || fail "the store's mark $m differs"
  rm -f "stored-$m.img"
done
# Shipped to a bucket (Ceph's RADOS Gateway) as it is written: the bucket keeps the
# records compressed, and they restore from the bucket alone.
start_ceph
s3 mb s3://vols >/dev/null
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind compress=zstd \
  segment-size=4M ship=s3://vols/disk ship-timeout=3s
qemu-io -f raw -t writeback -c "write -s text.bin 48M 8M" -c flush "$uri" >/dev/null
mark bucket
ship_status() { "$REWIND_CLI" info --json disk.rewind | json_field "$1"; }
for _ in $(seq 1 300); do
  [ "$(ship_status '["ship"]["acked_seq"]')" = "$(ship_status '["ship"]["durable_seq"]')" ] && break
  sleep 0.1
done
stop_server
[ "$(bucket_last s3://vols/disk)" = "$(info disk.rewind '["last_seq"]')" ] ||
  fail "the bucket holds seq $(bucket_last s3://vols/disk) of $(info disk.rewind '["last_seq"]')"
"$REWIND_CLI" log s3://vols/disk | grep -q "WRITE compressed: " ||
  fail "the bucket holds no compressed records: $("$REWIND_CLI" log s3://vols/disk)"
for m in text plain bucket; do
  "$REWIND_CLI" restore s3://vols/disk --mark "$m" -o "bucket-$m.img" >/dev/null
  cmp "bucket-$m.img" "truth-$m.img" || fail "the bucket's mark $m differs"
  rm -f "bucket-$m.img"
done
"$REWIND_CLI" verify s3://vols/disk >/dev/null || fail "verify of the bucket's copy"
echo "compress: OK"
