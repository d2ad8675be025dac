#!/usr/bin/env bash
# ship-compress=: a volume whose journal stores written data as it is (compress=off)
# ships it to a rewind-server compressed (ship-compress=zstd, the default). The store
# holds compressed records, far fewer bytes than the local journal, and fewer bytes
# crossed the wire; restores from the server equal at every mark what nbdcopy read from
# the live export. With ship-compress=off the store holds the records as the journal
# does.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy python3
: "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
# 8 MiB of text (the Python library's sources), 2 MiB that does not compress.
# (head stops reading at 8 MiB, which ends cat with SIGPIPE: the size is checked instead.)
find /usr/lib/python3* -name '*.py' -print0 | sort -z | xargs -0 cat 2>/dev/null | head -c 8M \
  >text.bin || true
[ "$(stat -c %s text.bin)" -eq $((8 << 20)) ] || fail "not 8 MiB of text to write"
head -c 2M /dev/urandom >random.bin

printf 'tok-a vol-a\ntok-b vol-b\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback

info() { "$REWIND_CLI" info --json "$1" | json_field "$2"; }
# ship VOL [KEY=VALUE...]: serves VOL.img shipped to the server as vol-VOL, writes text,
# random data and a pattern in three marked phases (capturing the export at each), and
# waits until the server holds every record.
ship() {
  local v=$1 m
  shift
  truncate -s 32M "$v.img"
  start_server "$workdir/$v.sock" image="$v.img" journal="$v.rewind" compress=off \
    segment-size=4M ship=127.0.0.1:$port ship-token="tok-$v" ship-volume="vol-$v" "$@"
  local uri
  uri=$(uri_of "$workdir/$v.sock")
  qemu-io -f raw -t writeback -c "write -s text.bin 0 8M" -c flush "$uri" >/dev/null
  "$REWIND_CLI" mark "$v.rewind" text >/dev/null
  nbdcopy "$uri" "truth-$v-text.img"
  qemu-io -f raw -t writeback -c "write -s random.bin 8M 2M" -c flush "$uri" >/dev/null
  "$REWIND_CLI" mark "$v.rewind" random >/dev/null
  nbdcopy "$uri" "truth-$v-random.img"
  qemu-io -f raw -t writeback -c "write -P 0x5a 16M 4M" -c "write -s text.bin 30000 12345" \
    -c "write -z 4M 1M" -c flush "$uri" >/dev/null
  "$REWIND_CLI" mark "$v.rewind" mixed >/dev/null
  nbdcopy "$uri" "truth-$v-mixed.img"
  for _ in $(seq 300); do
    [ "$(info "$v.rewind" '["ship"]["acked_seq"]')" = "$(info "$v.rewind" '["ship"]["durable_seq"]')" ] &&
      break
    sleep 0.1
  done
  [ "$(info "$v.rewind" '["ship"]["acked_seq"]')" = "$(info "$v.rewind" '["ship"]["durable_seq"]')" ] ||
    fail "the server did not catch up with $v"
  wire=$(info "$v.rewind" '["ship"]["wire_bytes"]')
  stop_server
}
# compressed DIR: "COUNT COVERED STORED" of the compressed WRITE records of DIR.
compressed() {
  "$REWIND_CLI" log --json "$1" | python3 -c '
import json, sys
segs = json.load(sys.stdin)["segments"]
print(*(sum(s[k] for s in segs) for k in ("compressed", "compressed_bytes", "compressed_stored")))'
}

ship a
wire_a=$wire
read -r n_local _ _ < <(compressed a.rewind)
[ "$n_local" -eq 0 ] || fail "the journal of compress=off holds $n_local compressed records"
read -r n covered stored < <(compressed store/vol-a)
echo "store: $n compressed records, $stored bytes for $covered"
[ "$n" -gt 0 ] && [ "$stored" -lt $((covered / 2)) ] ||
  fail "the store holds no well compressed records ($n records, $stored bytes for $covered)"
local_bytes=$(info a.rewind '["journal_bytes"]')
store_bytes=$(info store/vol-a '["journal_bytes"]')
echo "journal bytes: local $local_bytes, store $store_bytes; wire $wire_a"
# 8 MiB of text shrinks to well under half; the 2 MiB of random data does not.
[ "$store_bytes" -lt $((local_bytes * 2 / 3)) ] ||
  fail "the store holds $store_bytes journal bytes for the local $local_bytes"
[ "$wire_a" -lt $((local_bytes * 2 / 3)) ] ||
  fail "$wire_a bytes crossed the wire for $local_bytes journal bytes"
"$REWIND_CLI" verify store/vol-a >/dev/null || fail "verify of the store's copy"
export REWIND_TOKEN=tok-a
for m in text random mixed; do
  "$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol-a" --mark "$m" -o "restored-$m.img" \
    >/dev/null || fail "restore of mark $m from the server"
  cmp "restored-$m.img" "truth-a-$m.img" || fail "the server's mark $m differs from the export"
  rm -f "restored-$m.img"
done

ship b ship-compress=off
read -r n _ _ < <(compressed store/vol-b)
[ "$n" -eq 0 ] || fail "with ship-compress=off the store holds $n compressed records"
local_b=$(info b.rewind '["journal_bytes"]')
store_b=$(info store/vol-b '["journal_bytes"]')
[ "$store_b" -ge $((local_b * 19 / 20)) ] ||
  fail "with ship-compress=off the store holds $store_b journal bytes for the local $local_b"
export REWIND_TOKEN=tok-b
"$REWIND_CLI" restore "rewind://127.0.0.1:$port/vol-b" --mark mixed -o restored-b.img >/dev/null
cmp restored-b.img truth-b-mixed.img || fail "vol-b's mark mixed differs from the export"
echo "PASS"
