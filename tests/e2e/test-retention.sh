#!/usr/bin/env bash
# Retention in the running plugin: with journal-max=4M and 1 MiB segments, 16 MiB of
# writes leave a journal under 4 MiB; the plugin says loudly which history it gave up;
# the newest state and every point still promised restore exactly (captured with
# nbdcopy while it ran); points before the new base are refused naming the range.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io nbdcopy

cd "$workdir"
truncate -s 8M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M journal-max=4M
uri=$(uri_of "$sock")
for i in $(seq 1 32); do
  qemu-io -f raw -t writeback -c "write -P $i $(((i % 14) * 512))K 512K" -c flush "$uri" >/dev/null
  [ "$i" -eq 30 ] && nbdcopy "$uri" at30.img
done
nbdcopy "$uri" newest.img
# The policy runs every second.
for _ in $(seq 1 100); do
  grep -q "over journal-max=4.0 MiB: giving up the history of seq 1\.\." "$workdir/server.log" && break
  sleep 0.1
done
grep -q "over journal-max=4.0 MiB: giving up the history of seq 1\.\." "$workdir/server.log" ||
  fail "no warning about the history given up: $(cat "$workdir/server.log")"
stop_server

bytes=$("$REWIND_CLI" info --json disk.rewind | python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_bytes"])')
[ "$bytes" -le $((4 << 20)) ] || fail "journal of $bytes bytes over journal-max=4M"
read -r base last < <("$REWIND_CLI" info --json disk.rewind |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["base_seq"], j["last_seq"])')
[ "$base" -gt 0 ] && [ "$last" -eq 32 ] || fail "base $base, last $last"
"$REWIND_CLI" restore disk.rewind -o r-newest.img >/dev/null
cmp r-newest.img newest.img || fail "the newest state differs"
if [ "$base" -le 30 ]; then
  "$REWIND_CLI" restore disk.rewind --seq 30 -o r30.img >/dev/null
  cmp r30.img at30.img || fail "seq 30 differs"
fi
expect_cli 1 "before the oldest restorable point; the restorable range is seq $base" \
  restore disk.rewind --seq 1 -o old.img
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "verify"
[ "$(ls disk.rewind/base | wc -l)" -eq 1 ] || fail "base files: $(ls disk.rewind/base)"
check_replay disk.rewind disk.img
echo "PASS: retention"
