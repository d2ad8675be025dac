#!/usr/bin/env bash
# nbdkit without -f forks into the background: the flusher must start after the fork
# (a flush would otherwise never return) and SIGTERM must drain and checkpoint.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io timeout

cd "$workdir"
truncate -s 32M disk.img
sock=$workdir/nbd.sock
nbdkit -P "$workdir/pid" -U "$sock" "$REWIND_PLUGIN" image=disk.img journal=disk.rewind \
  flush-interval=1h
for i in $(seq 1 100); do [ -s pid ] && break; sleep 0.05; done
pid=$(cat pid)
cleanup "kill -KILL $pid"
uri=$(uri_of "$sock")
# flush-interval=1h: only the FLUSH itself can make the writes durable in time.
timeout 20 qemu-io -f raw -t writeback -c 'write -P 0x5c 0 2M' -c flush "$uri" >/dev/null ||
  fail "write + flush on the daemonized server did not complete"
"$REWIND_CLI" info --json disk.rewind | json_field '["in_use"]' | grep -q True ||
  fail "rewind info does not see the running server"
seq_open=$("$REWIND_CLI" log --json disk.rewind | json_field '["segments"][-1]["last_seq"]')
[ "$seq_open" -ge 1 ] || fail "flushed records are not in the journal"
kill -TERM "$pid"
for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "server did not stop on SIGTERM"
info=$("$REWIND_CLI" info --json disk.rewind)
[ "$(echo "$info" | json_field '["open_segments"]')" -eq 0 ] || fail "open segment left after shutdown"
[ "$(echo "$info" | json_field '["checkpoint_seq"]')" -eq "$(echo "$info" | json_field '["last_seq"]')" ] ||
  fail "image not checkpointed at shutdown"
head -c 2M disk.img | tr -d '\134' | wc -c | grep -qx 0 || fail "image lacks the written bytes"
check_replay disk.rewind disk.img
echo "PASS: daemonized server"
