#!/usr/bin/env bash
# Consistency groups: `rewind mark A NAME --with B` takes one mark across two running
# volumes at one cut. A client writes block N on A, waits for the acknowledgement,
# then writes block N on B saying so, round after round, while group marks are taken.
# Restoring both volumes at any group mark gives no B block whose A block is missing
# or older. Plain marks taken one after the other (A, then B) break that, and the test
# shows they do. A group mark whose hold cannot be taken changes nothing; the log
# shows each group mark with the other volume; --pre and --post run around a mark.
source "$(dirname "$0")/functions.sh"
requires nbdkit python3
: "${REWIND_BLOCKS:?set by CTest}"

cd "$workdir"
truncate -s 8M a.img b.img
start_server "$workdir/a.sock" image=a.img journal=a.rewind
a_pid=$server_pid
start_server "$workdir/b.sock" image=b.img journal=b.rewind
b_pid=$server_pid

"$REWIND_BLOCKS" pairs "$(uri_of "$workdir/a.sock")" "$(uri_of "$workdir/b.sock")" 2048 \
  "$workdir/stop" >pairs.out 2>pairs.err &
client=$!
cleanup "kill $client"
sleep 0.3
for k in $(seq 1 8); do
  "$REWIND_CLI" mark a.rewind "g$k" --with b.rewind >"g$k.out" || fail "group mark g$k"
  sed -n 's/.*new writes held for \([0-9.]*\) ms/\1/p' "g$k.out" >>held.txt
  # Plain marks, one after the other: A's, then B's after a moment's writes.
  "$REWIND_CLI" mark a.rewind "p$k" >/dev/null || fail "plain mark p$k on A"
  sleep 0.05
  "$REWIND_CLI" mark b.rewind "p$k" >/dev/null || fail "plain mark p$k on B"
  sleep 0.1
done
touch stop
wait "$client" || fail "the pair writer: $(cat pairs.err)"
echo "pairs written: $(cat pairs.out); group marks held new writes for $(sort -n held.txt | tr '\n' ' ')ms"
# --pre and --post run around a mark, and a failing --pre leaves nothing marked.
"$REWIND_CLI" mark a.rewind hooked --with b.rewind --pre 'echo "pre $REWIND_MARK" >>hooks.txt' \
  --post 'echo "post $REWIND_MARK" >>hooks.txt' >/dev/null || fail "a group mark with hooks"
[ "$(cat hooks.txt)" = "$(printf 'pre hooked\npost hooked')" ] || fail "hooks ran: $(cat hooks.txt)"
expect_cli 1 "--pre exited 3" mark a.rewind never --with b.rewind --pre 'exit 3' \
  --post 'echo post >>post.txt'
[ ! -e post.txt ] || fail "--post ran although --pre failed"
# A volume that is not served: the group mark fails with one line and marks nothing.
mkdir -p c.rewind
"$REWIND_CLI" init --image c.img --journal c.rewind --size 1M >/dev/null
expect_cli 1 "c.rewind" mark a.rewind lonely --with b.rewind --with c.rewind
expect_cli 2 "is a volume the group already has" mark a.rewind twice --with a.rewind
expect_cli 2 "--hold-max 0s: give 1ms to 30s" mark a.rewind x --with b.rewind --hold-max 0s
kill -TERM "$a_pid" "$b_pid"
wait "$a_pid" "$b_pid" || fail "a server exited with an error"
for m in lonely never; do
  "$REWIND_CLI" log a.rewind | grep -q "^mark $m " && fail "mark $m is in A"
  "$REWIND_CLI" log b.rewind | grep -q "^mark $m " && fail "mark $m is in B"
done

# The log names each group mark's other volume, in text and JSON.
b_id=$("$REWIND_CLI" info --json b.rewind | json_field '["volume_id"]')
"$REWIND_CLI" log a.rewind | grep -q "^mark g3  seq [0-9]*  .*  group [0-9a-f]*: one cut with 1 other volume(s), $b_id$" ||
  fail "the log does not show g3 as a group mark: $("$REWIND_CLI" log a.rewind | grep '^mark g3')"
"$REWIND_CLI" log --json b.rewind | python3 -c '
import json, sys
marks = {m["name"]: m for m in json.load(sys.stdin)["marks"]}
assert len(marks["g1"]["group"]["volumes"]) == 2 and "group" not in marks["p1"], marks
' || fail "the JSON log of B lacks the group"

# check MARK: restore both at the mark; a B block must have its A block of that round
# or a later one. Prints the violations.
check() {
  "$REWIND_CLI" restore a.rewind --mark "$1" -o "a-$1.img" >/dev/null || fail "restore A at $1"
  "$REWIND_CLI" restore b.rewind --mark "$1" -o "b-$1.img" >/dev/null || fail "restore B at $1"
  python3 - "a-$1.img" "b-$1.img" <<'PY'
import re, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
def round_of(img, n):
    m = re.match(rb"round (\d+) block (\d+)\0", img[n * 4096:n * 4096 + 64])
    assert m is None or int(m.group(2)) == n, (n, m.group(0))
    return int(m.group(1)) if m else 0
bad = sum(1 for n in range(len(b) // 4096) if round_of(b, n) > round_of(a, n))
written = sum(1 for n in range(len(b) // 4096) if round_of(b, n) > 0)
assert written > 0, "no B block at this mark: the client wrote nothing before it?"
print(bad)
PY
  rm -f "a-$1.img" "b-$1.img"
}
plain_bad=0
for k in $(seq 1 8); do
  bad=$(check "g$k")
  [ "$bad" -eq 0 ] || fail "group mark g$k: $bad B blocks without their A block"
  plain_bad=$((plain_bad + $(check "p$k")))
done
# Plain marks taken one after the other cut A before B: B blocks written between the
# two have no A block at A's mark.
[ "$plain_bad" -gt 0 ] || fail "the plain marks showed no inconsistency (is the check broken?)"
echo "PASS: 8 group marks consistent; plain marks one after the other: $plain_bad B blocks without their A block"
