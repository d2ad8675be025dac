#!/usr/bin/env bash
# ship-key=: a volume shipped to a rewind-server sealed with a key from `rewind keygen`.
# A pattern the client writes (and one already in the base snapshot) is in the local
# journal and image but in no file of the server's store; restores from the server with
# --key equal at every mark what nbdcopy read from the live export; without the key,
# or with another, a restore fails with one line and writes nothing; the server's
# operator verifies the store without the key (structure and stored checksums only);
# a changed byte of the sealed base, a changed record header and records moved to
# other seqs are found and named.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
/usr/bin/python3 -c "import xxhash" 2>/dev/null ||
  fail "python3-xxhash is not installed (run scripts/install-deps.sh --test)"
: "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
secret="REWIND-SECRET-PATTERN-7f3a"
secret_data "$secret"

"$REWIND_CLI" keygen k.key >/dev/null || fail "rewind keygen"
[ "$(stat -c %a k.key)" = 600 ] || fail "the key file is mode $(stat -c %a k.key), not 600"
"$REWIND_CLI" keygen k.key 2>/dev/null && fail "rewind keygen replaced a key file"
"$REWIND_CLI" keygen other.key >/dev/null

printf 'tok vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback

# The base snapshot holds the pattern too (written before the first serve). Records go
# uncompressed (ship-compress=off), so that only the seal keeps the pattern from the
# store.
truncate -s 32M disk.img
dd if=secret.bin of=disk.img bs=1M seek=20 conv=notrunc status=none
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind segment-size=2M \
  ship=127.0.0.1:$port ship-token=tok ship-volume=vol ship-key=@k.key ship-compress=off
secret_phases "$workdir/disk.sock" disk.rewind
stop_server

# The search finds the pattern where it is in the clear, and nowhere in the store.
grep -qa "$secret" disk.img || fail "the pattern is not in the image"
expect_no_secret "$secret" disk.rewind store
# Mark names and sizes are what the store learns, by design.
"$REWIND_CLI" log store/vol | grep -q "three" || fail "the store's log does not name the marks"

export REWIND_TOKEN=tok
# info and log show what the store learns, without the key, and say it is sealed.
"$REWIND_CLI" info --json "rewind://127.0.0.1:$port/vol" >info.json
[ "$(json_field '["sealed_copy"]' <info.json)" = True ] || fail "info does not say the copy is sealed"
[ "$("$REWIND_CLI" info --json disk.rewind | json_field '["sealed_copy"]')" = False ] ||
  fail "info calls the local journal sealed"
"$REWIND_CLI" log "rewind://127.0.0.1:$port/vol" >log.txt
grep -q "^base .*a sealed copy: its data is read with --key" log.txt ||
  fail "log does not say the copy is sealed: $(head -n 1 log.txt)"
for m in one two three; do
  "$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol" --mark "$m" --key k.key \
    -o "restored-$m.img" >/dev/null || fail "restore of mark $m with the key"
  cmp "restored-$m.img" "truth-$m.img" || fail "mark $m restored with the key differs"
  rm -f "restored-$m.img"
done
# A rotation: the old key and a new one both given.
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol" --mark two --key other.key --key k.key \
  -o restored.img >/dev/null || fail "restore with two keys"
cmp restored.img truth-two.img || fail "mark two restored with two keys differs"
rm -f restored.img

# rewind serve fetches the copy and serves a mark of it with the key; the fetched copy
# is gone when it stops.
"$REWIND_CLI" serve "rewind://127.0.0.1:$port/vol" --mark two --key k.key \
  --socket "$workdir/pit.sock" >serve.out 2>serve.err &
serve_pid=$!
cleanup "kill $serve_pid"
for _ in $(seq 1 200); do grep -q '^nbd+unix' serve.out 2>/dev/null && break; sleep 0.05; done
grep -q '^nbd+unix' serve.out || fail "rewind serve of the sealed copy: $(cat serve.err)"
nbdcopy "$(grep '^nbd+unix' serve.out)" served.img
cmp served.img truth-two.img || fail "mark two served with the key differs"
kill -TERM "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
rm -f served.img
ls -d /var/tmp/rewind-fetch.* 2>/dev/null && fail "rewind serve left the fetched copy"
keyid=$(sed -n 's/^# rewind key \([0-9a-f]*\):.*/\1/p' k.key)
expect_cli 1 "the record is sealed (encrypted) with key $keyid; give its key file (--key)" \
  serve "rewind://127.0.0.1:$port/vol" --mark two --socket "$workdir/no.sock"
expect_cli 1 "sealed with key $keyid" \
  serve "rewind://127.0.0.1:$port/vol" --mark two --key other.key --socket "$workdir/no.sock"
[ ! -e "$workdir/no.sock" ] || fail "a refused rewind serve made its socket"
# The plugin serves a view of a sealed copy with key=, and refuses it without one.
cp -a store/vol copy
start_server "$workdir/view.sock" journal=copy mark=two key=@k.key image-reads=off
nbdcopy "$(uri_of "$workdir/view.sock")" served.img
cmp served.img truth-two.img || fail "the plugin's view of mark two with key= differs"
stop_server
rm -f served.img
for args in "mark=two" "mark=two key=@other.key"; do
  # shellcheck disable=SC2086
  if nbdkit -f -U "$workdir/no.sock" "$REWIND_PLUGIN" journal=copy $args image-reads=off \
    2>view.err; then
    fail "the plugin served the sealed copy with $args"
  fi
  grep -q "sealed copy (shipped with ship-key=): give its key file with key=@FILE\|sealed with key" \
    view.err || fail "the plugin's refusal with $args is unclear: $(cat view.err)"
  echo "plugin with $args: $(grep -m1 "sealed" view.err)"
done

# expect_refusal WHAT ARGS...: a restore of mark two refused (functions.sh).
expect_refusal() { expect_restore_refused "rewind://127.0.0.1:$port/vol" "$@"; }
expect_refusal "without the key"
grep -q "SEALED: volume 'vol' is sealed" err.txt || fail "no clear refusal without the key"
expect_refusal "with another key" --key other.key
grep -q "sealed with key $(sed -n 's/^# rewind key \([0-9a-f]*\):.*/\1/p' k.key)" err.txt ||
  fail "the wrong key's refusal does not name the key it was sealed with"
chmod 644 other.key
expect_refusal "with a key others can read" --key other.key
grep -q "chmod 600" err.txt || fail "a readable key file is not refused"
ls /var/tmp/rewind-fetch.* 2>/dev/null && fail "a fetch left its temporary directory"

# The server's operator checks the store without the key, and says what was not checked.
"$REWIND_CLI" verify store/vol >verify.txt || fail "keyless verify of the store"
grep -q "contents NOT checked" verify.txt || fail "keyless verify does not say what it left"
"$REWIND_CLI" verify "rewind://127.0.0.1:$port/vol" --key k.key >verify.txt ||
  fail "verify with the key"
grep -q "opened with the key" verify.txt || fail "verify with the key did not open the records"

# A record header changed with its checksum made good again (what the store's operator
# could do), and two records swapped with their seqs (a record moved to another seq), in
# copies of the store's volume without their indexes: each is found by the key, and
# named by segment and seq. (/usr/bin/python3: Debian's, with python3-xxhash.)
tamper() {
  local copy=$1 how=$2
  rm -rf "$copy" && cp -a store/vol "$copy"
  /usr/bin/python3 - "$copy" "$how" <<'PY'
import glob, os, struct, sys, xxhash
copy, how = sys.argv[1], sys.argv[2]
HDR = struct.Struct("<QBBBBIQQQQQ")  # checksum type flags codec seal plen seq time off len pcs
def records(data):
    pos = 64
    while pos + 56 <= len(data) and data[pos + 8] != 0:
        f = list(HDR.unpack_from(data, pos))
        span = 56 + (f[5] + 7) // 8 * 8
        yield pos, span, f
        pos += span
def put(data, pos, f):
    f[0] = 0
    HDR.pack_into(data, pos, *f)
    struct.pack_into("<Q", data, pos, xxhash.xxh3_64_intdigest(bytes(data[pos + 8:pos + 56])))
for seg in sorted(glob.glob(copy + "/segments/*.seg")):
    data = bytearray(open(seg, "rb").read())
    recs = list(records(data))
    for i, (pos, span, f) in enumerate(recs):
        if f[1] != 1 or f[4] != 1 or f[8] != 8 << 20 or f[9] != 1 << 20:
            continue
        if how == "header":
            f[8] += 1 << 20  # the write's offset, 8M -> 9M
            put(data, pos, f)
        else:
            npos, nspan, g = recs[i + 1]
            a, b = bytes(data[pos:pos + span]), bytes(data[npos:npos + nspan])
            data[pos:pos + span + nspan] = b + a
            g[6], g[7], f[6], f[7] = f[6], f[7], g[6], g[7]  # seq and time stay in order
            put(data, pos, g)
            put(data, pos + nspan, f)
            f = g  # the first record that no longer opens
        open(seg, "wb").write(data)
        print(os.path.basename(seg), f[6])
        sys.exit(0)
sys.exit("no sealed 1 MiB write at 8M in " + copy)
PY
}
# verify with the key names both. A restore reads by the index, which the store left as
# it was: for the moved records it finds the payload under its checksum, for the changed
# header it reads the fields the seal authenticates (so the change has no effect); with
# the index gone, rebuilt from the records, the seal refuses the changed header.
for how in moved header; do
  read -r seg seq < <(tamper "tampered-$how" "$how") || fail "tampering ($how)"
  named="segment $seg offset [0-9]* seq $seq: "
  "$REWIND_CLI" verify "tampered-$how" --key k.key 2>verify.txt >/dev/null &&
    fail "verify with the key passed the $how record"
  grep -q "${named}sealed record does not authenticate" verify.txt ||
    fail "verify does not name the $how record (seq $seq): $(cat verify.txt)"
  if [ "$how" = moved ]; then
    expect_restore_refused "tampered-$how" "of moved records" --key k.key
    grep -q "${named}payload checksum mismatch" err.txt || fail "the moved record is not named"
    continue
  fi
  "$REWIND_CLI" restore "tampered-$how" --mark two --key k.key -o out.img >/dev/null ||
    fail "a restore by the index of the changed header"
  cmp out.img truth-two.img || fail "a changed header changed what was restored"
  rm -f out.img "tampered-$how/segments/$(basename "$seg" .seg).idx"
  "$REWIND_CLI" restore "tampered-$how" --mark two --key k.key -o out.img 2>err.txt >/dev/null &&
    fail "a restore of a changed header succeeded once its index was gone"
  [ ! -e out.img ] || fail "a refused restore left out.img"
  grep -q "${named}sealed record does not authenticate" err.txt ||
    fail "the changed header is not named: $(cat err.txt)"
done

# A changed byte of the sealed base (which has no checksum of its own in the store) is
# found by the key, and named.
base=$(find store/vol/base -type f | head -n 1)
python3 - "$base" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(21 * ((1 << 20) + 4096) + 100)  # into chunk 21 (bytes 21M..22M), read at mark two
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x01]))
PY
expect_refusal "of a changed base" --key k.key
grep -q "sealed base chunk 21 .*does not authenticate" err.txt ||
  fail "the changed base chunk is not named"
"$REWIND_CLI" verify store/vol --key k.key 2>verify.txt >/dev/null &&
  fail "verify with the key passed a changed base"
grep -q "sealed base chunk 21" verify.txt ||
  fail "verify with the key does not name the changed base chunk: $(cat verify.txt)"
echo "PASS"
