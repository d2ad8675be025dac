#!/usr/bin/env bash
# ship-key= to a bucket of a real S3 server (Ceph's RADOS Gateway, started by the
# test), both ways a sealed copy gets there: shipped by the plugin itself (ship=s3://,
# through a spool in the journal directory), and through a rewind-server whose store
# is the bucket. Each copy is in the same layout and read the same way.
#
# A pattern the client writes (and one already in the base snapshot) and blocks of
# random data are in the local journal, and in no object of the bucket, nor any file of
# the server's cache or the plugin's spool. Restores from the bucket (`rewind restore
# s3://... --key`) equal at every mark what nbdcopy read from the live export, also
# after the plugin restarted and went on from its spool; so does `rewind serve
# s3://... --key` (a first read of one chunk of the base fetches just its slot).
# Without the key, or with another, a restore fails with one line and writes nothing,
# and the plugin refuses to serve the copy. `rewind info` and `rewind log` show what
# the store learns and say that the copy is sealed; `rewind verify` checks a copy
# without the key and says that the contents were not checked, and with it opens every
# record and base chunk; retention of a sealed copy is refused; a changed byte of a
# stored record is found and named.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
: "${REWIND_SERVER:?set by CTest}"
start_ceph
cd "$workdir"
s3 mb s3://rewind >/dev/null

secret="REWIND-SECRET-PATTERN-9c1e"
secret_data "$secret"
"$REWIND_CLI" keygen k.key >/dev/null || fail "rewind keygen"
"$REWIND_CLI" keygen other.key >/dev/null
keyid=$(sed -n 's/^# rewind key \([0-9a-f]*\):.*/\1/p' k.key)

# expect_refusal WHAT ARGS...: a restore of mark two of $copy refused (functions.sh).
expect_refusal() { expect_restore_refused "$copy" "$@"; }
# restores_as_captured MARK...: each mark of $copy restored with the key equals its capture.
restores_as_captured() {
  local m
  for m in "$@"; do
    "$REWIND_CLI" restore "$copy" --mark "$m" --key k.key -o "restored-$m.img" >/dev/null ||
      fail "restore of mark $m of $copy with the key"
    cmp "restored-$m.img" "truth-$m.img" || fail "mark $m of $copy restored with the key differs"
    rm -f "restored-$m.img"
  done
}
# new_image NAME: a 32 MiB image whose base holds the pattern and 1 MiB of 'Z' (0x5a).
new_image() {
  truncate -s 32M "$1"
  dd if=secret.bin of="$1" bs=1M seek=20 conv=notrunc status=none
  head -c 1M /dev/zero | tr '\0' 'Z' | dd of="$1" bs=1M seek=26 conv=notrunc status=none
}

# --- the plugin ships the sealed copy itself ---------------------------------------
copy=s3://rewind/direct/vol
new_image direct.img
start_server "$workdir/direct.sock" image=direct.img journal=direct.rewind segment-size=1M \
  ship=$copy ship-key=@k.key
secret_phases "$workdir/direct.sock" direct.rewind
acked=$("$REWIND_CLI" info --json direct.rewind | json_field '["ship"]["acked_seq"]')
[ "$(bucket_last $copy)" = "$acked" ] ||
  fail "acknowledged seq $acked, but the bucket holds $(bucket_last $copy)"
stop_server
spool=direct.rewind/ship-spool/spool/vol
[ -z "$(ls $spool/base)" ] || fail "the spool kept the base the bucket holds: $(ls $spool/base)"
restores_as_captured one two three
# Started again, the plugin goes on from its spool.
start_server "$workdir/direct.sock" image=direct.img journal=direct.rewind segment-size=1M \
  ship=$copy ship-key=@k.key
qemu-io -f raw -t writeback -c "write -P 0x44 2M 128k" -c flush \
  "$(uri_of "$workdir/direct.sock")" >/dev/null
"$REWIND_CLI" mark direct.rewind four >/dev/null
nbdcopy "$(uri_of "$workdir/direct.sock")" truth-four.img
last=$("$REWIND_CLI" info --json direct.rewind | json_field '["last_seq"]')
for _ in $(seq 300); do
  [ "$(bucket_last $copy)" = "$last" ] && break
  sleep 0.1
done
stop_server
restores_as_captured one four
expect_refusal "without the key"
grep -q "is sealed (shipped with ship-key=); nothing was written" err.txt ||
  fail "no clear refusal without the key"
expect_refusal "with another key" --key other.key
grep -q "sealed with key $keyid" err.txt || fail "the wrong key's refusal does not name the key"
"$REWIND_CLI" verify $copy >verify.txt || fail "keyless verify of $copy: $(cat verify.txt)"
grep -q "contents NOT checked" verify.txt || fail "keyless verify does not say what it left"
"$REWIND_CLI" verify $copy --key k.key >verify.txt || fail "verify with the key: $(cat verify.txt)"
grep -q "opened with the key" verify.txt || fail "verify of $copy did not open the records"

# --- through a rewind-server whose store is the bucket -----------------------------
copy=s3://rewind/servers/vol
printf 'tok vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store s3://rewind/servers --cache "$workdir/cache" --tokens tokens \
  --insecure-loopback
server=$log_server_pid

# Records go uncompressed (ship-compress=off), so that only the seal keeps the pattern
# from the bucket.
new_image disk.img
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind segment-size=1M \
  ship=127.0.0.1:$port ship-token=tok ship-volume=vol ship-key=@k.key ship-compress=off
secret_phases "$workdir/disk.sock" disk.rewind
acked=$("$REWIND_CLI" info --json disk.rewind | json_field '["ship"]["acked_seq"]')
[ "$(bucket_last $copy)" = "$acked" ] ||
  fail "acknowledged seq $acked, but the bucket holds $(bucket_last $copy)"
stop_server

# The search finds the pattern where it is in the clear, and in no object of the
# bucket (both copies) nor any file of the server's cache or the plugin's spool.
mkdir objects
s3 sync s3://rewind/ objects/ >/dev/null || fail "could not download the bucket"
[ "$(find objects -type f | wc -l)" -gt 5 ] || fail "the bucket holds too few objects to search"
# A sealed base is stored a slot per object without the slots' trailing zeroes: at
# most the 5 MiB of data the base holds and a little per slot, not its 32 MiB.
for prefix in direct servers; do
  base_bytes=$(find objects/$prefix -path '*/base/*' -type f -printf '%s\n' |
    awk '{n += $1} END {print n}')
  [ "$base_bytes" -le $(((5 << 20) + 32 * 8192)) ] ||
    fail "the sealed base of $prefix/vol takes $base_bytes bytes of the bucket for 5 MiB of data"
done
expect_no_secret "$secret" disk.rewind objects cache direct.rewind/ship-spool

# info and log show what the store learns, without the key, and say it is sealed.
info() { "$REWIND_CLI" info --json "$1" | json_field "$2"; }
[ "$(info $copy '["sealed_copy"]')" = True ] || fail "info does not say the copy is sealed"
"$REWIND_CLI" log $copy >log.txt
grep -q "^base .*a sealed copy: its data is read with --key" log.txt ||
  fail "log does not say the copy is sealed: $(head -n 1 log.txt)"
grep -q "three" log.txt || fail "the bucket's log does not name the marks"

restores_as_captured one two three

# rewind serve of a mark of the copy, with the key.
"$REWIND_CLI" serve $copy --mark two --key k.key --socket "$workdir/pit.sock" >serve.out \
  2>serve.err &
serve_pid=$!
cleanup "kill $serve_pid"
for _ in $(seq 1 200); do grep -q '^nbd+unix' serve.out 2>/dev/null && break; sleep 0.05; done
grep -q '^nbd+unix' serve.out || fail "rewind serve of the sealed copy: $(cat serve.err)"
# One read first, of a chunk of the base alone (each read fetches just what it needs).
qemu-io -f raw -r -c "read -P 0x5a 26M 4k" "$(grep '^nbd+unix' serve.out)" >read.out 2>&1 ||
  fail "a read of the sealed base through rewind serve: $(cat read.out)"
grep -q "^read 4096/4096 bytes" read.out && ! grep -q "verification failed" read.out ||
  fail "a read of the sealed base through rewind serve: $(cat read.out)"
nbdcopy "$(grep '^nbd+unix' serve.out)" served.img
cmp served.img truth-two.img || fail "mark two served with the key differs"
kill -TERM "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
rm -f served.img
# The plugin refuses a view of the copy without its key, or with another.
for args in "mark=two" "mark=two key=@other.key"; do
  # shellcheck disable=SC2086
  if nbdkit -f -U "$workdir/no.sock" "$REWIND_PLUGIN" journal=$copy $args 2>view.err; then
    fail "the plugin served the sealed copy with $args"
  fi
  grep -q "sealed copy (shipped with ship-key=): give its key file with key=@FILE\|sealed with key $keyid" \
    view.err || fail "the plugin's refusal with $args is unclear: $(cat view.err)"
done

expect_refusal "without the key"
grep -q "is sealed (shipped with ship-key=); nothing was written" err.txt ||
  fail "no clear refusal without the key"
expect_refusal "with another key" --key other.key
grep -q "sealed with key $keyid" err.txt || fail "the wrong key's refusal does not name the key"
# Through the server: it cannot read the copy, and says where readers read it.
export REWIND_TOKEN=tok
if "$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol" --mark two -o out.img 2>err.txt; then
  fail "the server restored a sealed copy without the key"
fi
grep -q "SEALED: volume 'vol' is sealed" err.txt || fail "the server's refusal: $(cat err.txt)"
[ ! -e out.img ] || fail "a refused restore through the server left a file"

# The copy checked without the key (structure, stored checksums), then with it.
"$REWIND_CLI" verify $copy >verify.txt || fail "keyless verify of the copy: $(cat verify.txt)"
grep -q "contents NOT checked" verify.txt || fail "keyless verify does not say what it left"
"$REWIND_CLI" verify $copy --key k.key >verify.txt || fail "verify with the key: $(cat verify.txt)"
grep -q "opened with the key" verify.txt || fail "verify with the key did not open the records"

# Retention of the copy would need the key: refused, with one line, nothing changed.
before=$(s3 get "$copy/MANIFEST" - 2>/dev/null | md5sum)
expect_cli 1 "is a sealed copy (shipped with ship-key=): retention folds" retain $copy --retain 1s
[ "$(s3 get "$copy/MANIFEST" - 2>/dev/null | md5sum)" = "$before" ] ||
  fail "a refused retention changed the copy's manifest"

# A changed byte of the copy's open segment (its pieces in the bucket, in which the
# server's store keeps this much) is found, and named.
kill -TERM "$server"
wait "$server" 2>/dev/null || true
piece=$(cd objects && find ./servers -path '*/tail/*' -name '*-00000000000000000000')
piece=${piece#./}
[ -n "$piece" ] || fail "no piece of the open segment in the bucket: $(find objects)"
python3 - "objects/$piece" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(70000)  # inside the first record's payload (seq 1, at offset 64)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x01]))
PY
s3 put "objects/$piece" "s3://rewind/$piece" >/dev/null
if "$REWIND_CLI" verify $copy --key k.key >verify.txt 2>&1; then
  fail "verify passed a changed record"
fi
grep -q "segment 00000000000000000001.seg offset 64 seq 1" verify.txt ||
  fail "verify does not name the changed record: $(cat verify.txt)"
expect_refusal "of a changed record" --key k.key
grep -q "segment 00000000000000000001.seg offset 64 seq 1" err.txt ||
  fail "the restore does not name the changed record"
echo "PASS"
