#!/usr/bin/env bash
# dist/systemd/rewind@.service and rewind-server.service: systemd-analyze verify accepts
# them and rates their sandboxes 2.0 or less. The command rewind@.service
# runs (ExecStart, expanded as systemd does from its Environment= defaults and a
# configuration file like dist/systemd/example.conf) serves the volume, stops cleanly
# on SIGTERM, and after a clean stop or a kill -9 (Restart=on-failure) starts again
# with every flushed write. systemd itself is not running here: the unit's command is
# run the way systemd would run it.
source "$(dirname "$0")/functions.sh"
requires systemd-analyze qemu-io python3
unit=$(cd "$(dirname "$0")/../../dist/systemd" && pwd)/rewind@.service

cd "$workdir"
mkdir units
cp "$unit" units/
systemd-analyze verify "units/rewind@vol1.service" >verify.log 2>&1 ||
  { cat verify.log; fail "systemd-analyze verify rejects rewind@.service"; }
# rewind-server.service, with its ExecStart pointed at the built server.
sed "s|^ExecStart=rewind-server |ExecStart=$REWIND_SERVER |" "$(dirname "$unit")/rewind-server.service" \
  >units/rewind-server.service
systemd-analyze verify units/rewind-server.service >verify.log 2>&1 ||
  { cat verify.log; fail "systemd-analyze verify rejects rewind-server.service"; }
# Both are sandboxed: their own user, private files, nothing writable but their
# state, no privileges; systemd-analyze rates each 2.0 or less ("OK").
cp units/rewind@.service units/rewind@vol1.service
for u in rewind@vol1 rewind-server; do
  for d in User= UMask=0077 ProtectSystem=strict NoNewPrivileges=yes CapabilityBoundingSet= \
    PrivateTmp=yes ProtectHome=yes; do
    grep -q "^$d" "units/$u.service" || fail "$u.service has no $d"
  done
  score=$(systemd-analyze security --offline=true "units/$u.service" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  [ -n "$score" ] || fail "systemd-analyze security did not rate $u.service"
  echo "systemd-analyze security: $u.service exposure $score"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$u.service is rated $score, over 2.0"
done

truncate -s 32M vol1.img
sock=$workdir/vol1.sock
cat >vol1.conf <<EOF
# as in dist/systemd/example.conf
IMAGE=$workdir/vol1.img
JOURNAL=$workdir/vol1.rewind
SOCKET=$sock
PLUGIN=$REWIND_PLUGIN
OPTIONS="flush-interval=20ms segment-size=1M"
EOF

# The unit's ExecStart for instance vol1, expanded: Environment= defaults, then the
# EnvironmentFile, "${VAR}" as one word, a lone "$VAR" split on white space.
python3 - "$unit" vol1.conf vol1 >cmd.txt <<'PY'
import re, shlex, sys
unit, conf, instance = sys.argv[1:]
env, cmd = {}, None
for line in open(unit):
    line = line.strip().replace("%i", instance)
    if line.startswith("Environment="):
        for word in shlex.split(line[len("Environment="):]):
            k, _, v = word.partition("=")
            env[k] = v
    elif line.startswith("ExecStart="):
        cmd = line[len("ExecStart="):]
for line in open(conf):
    line = line.strip()
    if line and not line.startswith("#"):
        k, _, v = line.partition("=")
        env[k] = shlex.split(v)[0] if v else ""
out = []
for word in cmd.split():
    if re.fullmatch(r"\$[A-Za-z_]\w*", word):
        out += env.get(word[1:], "").split()
    else:
        out.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
print("\n".join(out))
PY
mapfile -t cmd <cmd.txt
[ "${cmd[0]}" = "$nbdkit_path" ] || fail "ExecStart runs ${cmd[0]}, not nbdkit ($nbdkit_path)"
cmd[0]=nbdkit  # through PATH: a sanitizer build wraps it

start_unit() {
  rm -f "$sock"
  setpriv --pdeathsig KILL "${cmd[@]}" 2>>server.log &
  server_pid=$!
  cleanup "kill -KILL $server_pid"
  local i
  for i in $(seq 1 200); do
    nbdinfo --size "$(uri_of "$sock")" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat server.log; fail "the unit's command exited at start"; }
    sleep 0.05
  done
  fail "the unit's command does not serve $sock"
}
uri=$(uri_of "$sock")

start_unit
qemu-io -f raw -t writeback -c 'write -P 7 1M 2M' -c flush "$uri" >/dev/null || fail "write"
stop_server  # SIGTERM, as systemctl stop sends: exit status 0
start_unit   # systemctl start again
qemu-io -f raw -c 'read -P 7 1M 2M' "$uri" | grep -q 'read 2097152/2097152' || fail "data after a restart"
qemu-io -f raw -t writeback -c 'write -P 9 8M 1M' -c flush "$uri" >/dev/null || fail "write"
kill -KILL "$server_pid"  # a crash: Restart=on-failure starts it again
wait "$server_pid" 2>/dev/null || true
start_unit
qemu-io -f raw -c 'read -P 7 1M 2M' -c 'read -P 9 8M 1M' "$uri" | grep -c '^read ' | grep -q 2 ||
  fail "flushed data after a kill -9 and a restart"
stop_server
"$REWIND_CLI" verify vol1.rewind --image vol1.img >/dev/null || fail "rewind verify --image"
echo "PASS: rewind@.service verifies, serves, stops cleanly and restarts with every flushed write"
