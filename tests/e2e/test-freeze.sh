#!/usr/bin/env bash
# rewind mark --freeze qga:SOCKET against a stand-in for the QEMU guest agent on a UNIX
# socket (the real one, in a guest, is tests/vm/test-vm-freeze.sh): the agent is synced
# with guest-sync-delimited (an earlier session's leftovers skipped), the guest frozen
# before the mark and thawed after it, with --pre/--post around both. An agent that
# never answers fails the mark within --freeze-timeout and marks nothing. One that
# answers the freeze late (a slow fsfreeze hook: it freezes after the timeout) is sent
# the thaw at once, and rewind waits for the thaw's answer before it exits; one that
# answers neither within --thaw-wait is one line saying the guest may be left frozen.
# One that refuses the freeze marks nothing and is thawed; a socket nobody listens on
# is one line.
source "$(dirname "$0")/functions.sh"
requires nbdkit python3

cd "$workdir"
truncate -s 4M disk.img
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind

# agent MODE: a stand-in agent on qga.sock that logs each command to agent.log.
# answer: answers as qemu-ga does; silent: never answers; sync-only: answers only the
# sync; late: answers the freeze after 3 s, in order as qemu-ga does; refuse: refuses
# the freeze.
agent() {
  rm -f qga.sock agent.log
  python3 - "$1" <<'PY' &
import json, os, socket, sys, time
mode = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind("qga.sock")
s.listen(1)
c, _ = s.accept()
c.sendall(b'{"return": 7}\n')  # what an earlier session left unread
buf = b""
while True:
    data = c.recv(4096)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        req = json.loads(line)
        cmd = req["execute"]
        with open("agent.log", "a") as log:
            log.write(cmd + "\n")
        if mode == "silent" or (mode == "sync-only" and cmd != "guest-sync-delimited"):
            continue
        if cmd == "guest-sync-delimited":
            c.sendall(b"\xff" + json.dumps({"return": req["arguments"]["id"]}).encode() + b"\n")
        elif cmd == "guest-fsfreeze-freeze" and mode == "late":
            time.sleep(3)
            c.sendall(b'{"return": 2}\n')
            with open("agent.log", "a") as log:
                log.write("frozen\n")
        elif cmd == "guest-fsfreeze-freeze" and mode == "refuse":
            c.sendall(b'{"error": {"class": "GenericError", "desc": "failed to freeze /: Device or resource busy"}}\n')
        else:
            c.sendall(b'{"return": 2}\n')
PY
  agent_pid=$!
  cleanup "kill $agent_pid"
  for _ in $(seq 100); do [ -S qga.sock ] && return; sleep 0.05; done
  fail "the stand-in agent did not start"
}
marked() { "$REWIND_CLI" log disk.rewind | grep -q "^mark $1 "; }

agent answer
"$REWIND_CLI" mark disk.rewind frozen --freeze qga:qga.sock --pre 'echo pre >>agent.log' \
  --post 'echo post >>agent.log' >mark.out || fail "a mark with --freeze"
grep -q "^froze 2 file system(s) of the guest$" mark.out || fail "no freeze reported: $(cat mark.out)"
grep -q "^thawed 2 file system(s) of the guest$" mark.out || fail "no thaw reported: $(cat mark.out)"
[ "$(tr '\n' ' ' <agent.log)" = "pre guest-sync-delimited guest-fsfreeze-freeze guest-fsfreeze-thaw post " ] ||
  fail "the agent saw: $(tr '\n' ' ' <agent.log)"
marked frozen || fail "no mark 'frozen'"
wait "$agent_pid" || true

agent silent
start=$SECONDS
expect_cli 1 "did not answer within 1000 ms" mark disk.rewind never --freeze qga:qga.sock \
  --freeze-timeout 1s
[ $((SECONDS - start)) -le 5 ] || fail "the silent agent held the mark for $((SECONDS - start)) s"
marked never && fail "a mark was taken although the agent never answered"
kill "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true

# An agent that answers the freeze late: nothing is marked, the thaw is sent, and
# rewind exits only once the thaw is answered, after the late freeze.
agent late
expect_cli 1 "guest-fsfreeze-freeze: the guest agent qga.sock did not answer within 1000 ms" \
  mark disk.rewind late --freeze qga:qga.sock --freeze-timeout 1s
[ "$(tr '\n' ' ' <agent.log)" = "guest-sync-delimited guest-fsfreeze-freeze frozen guest-fsfreeze-thaw " ] ||
  fail "the late agent saw: $(tr '\n' ' ' <agent.log)"
grep -q "^thawed 2 file system(s) of the guest after the unanswered freeze$" cli.out ||
  fail "the late agent's thaw was not reported: $(cat cli.out)"
marked late && fail "a mark was taken although the freeze came late"
kill "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true

# An agent that answers the sync but never the freeze (it may have frozen the guest)
# is still sent the thaw; when that is not answered within --thaw-wait either, the one
# error line says the guest may be left frozen and how to thaw it.
agent sync-only
start=$SECONDS
expect_cli 1 "did not answer within 1000 ms; then thawing: guest-fsfreeze-freeze: the guest agent qga.sock did not answer within 1500 ms: the guest may be left frozen; thaw it by hand" \
  mark disk.rewind stuck --freeze qga:qga.sock --freeze-timeout 1s --thaw-wait 1.5s
[ $((SECONDS - start)) -le 6 ] || fail "the stuck agent held the mark for $((SECONDS - start)) s"
sleep 0.2
[ "$(tr '\n' ' ' <agent.log)" = "guest-sync-delimited guest-fsfreeze-freeze guest-fsfreeze-thaw " ] ||
  fail "the stuck agent saw: $(tr '\n' ' ' <agent.log)"
marked stuck && fail "a mark was taken although the freeze never answered"
kill "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true
expect_cli 2 "--thaw-wait soon: give a duration such as 60s" mark disk.rewind x \
  --freeze qga:qga.sock --thaw-wait soon

agent refuse
expect_cli 1 "the guest agent refused guest-fsfreeze-freeze: failed to freeze /" \
  mark disk.rewind refused --freeze qga:qga.sock
[ "$(tr '\n' ' ' <agent.log)" = "guest-sync-delimited guest-fsfreeze-freeze guest-fsfreeze-thaw " ] ||
  fail "after a refused freeze the agent saw: $(tr '\n' ' ' <agent.log)"
marked refused && fail "a mark was taken although the freeze was refused"

rm -f qga.sock
expect_cli 1 "cannot connect to the guest agent's socket" mark disk.rewind x --freeze qga:qga.sock
expect_cli 2 "--freeze virtio:x: give qga:SOCKET" mark disk.rewind x --freeze virtio:x
stop_server
echo "PASS"
