#!/usr/bin/env bash
# The rewind tool: init creates a volume that the plugin then serves; info and log
# describe it; errors are one line with the documented exit status and change nothing.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io

cd "$workdir"

expect_cli 2 "image new.img does not exist; give --size" init --image new.img --journal new.rewind
expect_cli 2 "'lots' is not a size" init --image new.img --journal new.rewind --size lots
expect_cli 2 "not a non-zero multiple of 512" init --image new.img --journal new.rewind --size 1000
[ ! -e new.img ] && [ ! -e new.rewind ] || fail "a failed init left files behind"
expect_cli 2 "A subcommand is required" 
expect_cli 2 "journal is required" info
expect_cli 2 "" frobnicate

"$REWIND_CLI" init --image new.img --journal new.rewind --size 64M | grep -q "created journal" ||
  fail "init did not say what it created"
[ "$(stat -c %s new.img)" -eq $((64 << 20)) ] || fail "init made an image of the wrong size"
expect_cli 1 "already exists" init --image new.img --journal new.rewind
expect_cli 1 "exists and is 67108864 bytes" init --image new.img --journal other.rewind --size 1G

# The plugin serves what init created, and info/log show the writes.
sock=$workdir/nbd.sock
start_server "$sock" image=new.img journal=new.rewind
qemu-io -f raw -t writeback -c 'write -P 7 0 1M' -c 'write -z 1M 1M' -c 'discard 2M 1M' -c flush \
  "$(uri_of "$sock")" >/dev/null
stop_server
"$REWIND_CLI" info new.rewind | grep -q '^records     3 in 1 segment (0 open)' || fail "info: $("$REWIND_CLI" info new.rewind)"
"$REWIND_CLI" log new.rewind | grep -q '3 records: 1 WRITE (1.0 MiB), 1 ZERO (1.0 MiB), 1 TRIM (1.0 MiB), 0 MARK' ||
  fail "log: $("$REWIND_CLI" log new.rewind)"

expect_cli 2 "--journal-max: 'lots' is not a size" info new.rewind --journal-max lots
"$REWIND_CLI" info new.rewind --journal-max 64M | grep -q '^journal-max 64.0 MiB: [0-9]*% used; too little history to forecast' ||
  fail "info --journal-max: $("$REWIND_CLI" info new.rewind --journal-max 64M)"
"$REWIND_CLI" info --json new.rewind --journal-max 64M | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["journal_max"] == 64 << 20 and j["fills_in_s"] == -1 and j["history_ns"] > 0, j' ||
  fail "info --json --journal-max"
expect_cli 1 "cannot open nothere/MANIFEST" info nothere
# A damaged manifest is named, not trusted.
cp new.rewind/MANIFEST manifest.good
sed -i 's/checkpoint-seq 3/checkpoint-seq 2/' new.rewind/MANIFEST
expect_cli 1 "checksum mismatch" info new.rewind
expect_cli 1 "checksum mismatch" log new.rewind
cp manifest.good new.rewind/MANIFEST
"$REWIND_CLI" info new.rewind >/dev/null
echo "PASS: rewind CLI"
