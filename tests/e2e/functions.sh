# Shared by the shell end-to-end tests: sourced, never run.
# CTest sets REWIND_PLUGIN, REWIND_CLI and REWIND_REPLAY to the built artefacts.
set -euo pipefail

: "${REWIND_PLUGIN:?set by CTest: path of nbdkit-rewind-plugin.so}"
: "${REWIND_CLI:?set by CTest: path of the rewind tool}"
: "${REWIND_REPLAY:?set by CTest: path of rewind-test-replay}"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The README's test command installs every tool; a missing one is a failure.
requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || fail "$c is not installed (run scripts/install-deps.sh)"
  done
}

workdir=$(mktemp -d /tmp/rewind-e2e.XXXXXX)
_cleanups=()
# Registers a command to run on exit, before those registered earlier.
cleanup() { _cleanups=("$1" "${_cleanups[@]}"); }
_on_exit() {
  local rc=$? c
  for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  if compgen -G "$workdir/sanitizer.*" >/dev/null; then
    cat "$workdir"/sanitizer.* >&2
    echo "FAIL: a sanitizer reported a problem in nbdkit" >&2
    rc=1
  fi
  rm -rf "$workdir"
  exit $rc
}
trap _on_exit EXIT

# A sanitizer build (REWIND_SANITIZE): nbdkit is not built with the sanitizer, so the
# runtime the plugin needs is preloaded (in the order CMakeLists.txt explains), by a
# wrapper first in PATH that execs nbdkit. (Not a shell function: `nbdkit ... &` must
# leave nbdkit's own pid in $!, or SIGTERM reaches a subshell and the server runs on.)
# The server's reports go to $workdir/sanitizer.PID, and any there fails the test.
# Leaks are checked in rewind's own programs (the unit tests, e2e_tests and the CLI),
# not in nbdkit and its clients.
nbdkit_path=$(command -v nbdkit || true)  # the real one, whatever PATH says below
if [ -n "${REWIND_PRELOAD:-}" ]; then
  requires nbdkit
  mkdir "$workdir/bin"
  log=log_path=$workdir/sanitizer
  cat >"$workdir/bin/nbdkit" <<EOF
#!/bin/sh
LD_PRELOAD="$REWIND_PRELOAD" ASAN_OPTIONS="$log:detect_leaks=0:verify_asan_link_order=0" \\
  UBSAN_OPTIONS="$log" TSAN_OPTIONS="$log" exec $nbdkit_path "\$@"
EOF
  chmod +x "$workdir/bin/nbdkit"
  PATH=$workdir/bin:$PATH
fi

# start_server SOCK KEY=VALUE...: the plugin under nbdkit in the foreground (in the
# background of this script); sets server_pid and waits until it accepts clients.
# The server dies with this script, even if the script is killed (a test timeout).
start_server() {
  local sock=$1
  shift
  rm -f "$sock"
  setpriv --pdeathsig KILL nbdkit -f -U "$sock" "$REWIND_PLUGIN" "$@" 2>>"$workdir/server.log" &
  server_pid=$!
  cleanup "kill -KILL $server_pid"
  local i
  for i in $(seq 1 200); do
    if [ -S "$sock" ] && nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$workdir/server.log" >&2; fail "server exited at start"; }
    sleep 0.05
  done
  fail "server did not start on $sock"
}

# stop_server: SIGTERM (clean shutdown) and check the exit status.
stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$workdir/server.log" >&2; fail "server exited with status $rc"; }
}

uri_of() { echo "nbd+unix:///?socket=$1"; }

# start_log_server HOST:PORT ARGS...: rewind-server listening there (port 0: any free
# one), its log in $workdir/log-server.log; waits until it listens, then sets
# log_server_pid and port. It dies with this script.
start_log_server() {
  local listen=$1 before i
  shift
  before=$(grep -c 'listening on' "$workdir/log-server.log" 2>/dev/null || true)
  setpriv --pdeathsig KILL "$REWIND_SERVER" --listen "$listen" "$@" 2>>"$workdir/log-server.log" &
  log_server_pid=$!
  cleanup "kill -KILL $log_server_pid"
  for i in $(seq 1 100); do
    if [ "$(grep -c 'listening on' "$workdir/log-server.log")" -gt "${before:-0}" ]; then
      port=$(sed -n "s/.*listening on [^ ]*:\([0-9]*\).*/\1/p" "$workdir/log-server.log" | tail -n 1)
      return 0
    fi
    kill -0 "$log_server_pid" 2>/dev/null || fail "rewind-server exited: $(cat "$workdir/log-server.log")"
    sleep 0.05
  done
  fail "rewind-server did not start: $(cat "$workdir/log-server.log")"
}

# JSON field of `rewind info --json` / `rewind log --json` output.
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# image == replay(base, journal)
check_replay() {
  local journal=$1 image=$2
  "$REWIND_REPLAY" "$journal" "$workdir/replayed.img"
  cmp "$workdir/replayed.img" "$image" || fail "image differs from replay of the journal"
  rm -f "$workdir/replayed.img"
}

# expect_cli STATUS MESSAGE ARGS...: `rewind ARGS` exits with STATUS and prints one
# error line on stderr holding MESSAGE.
expect_cli() {
  local want=$1 msg=$2 rc=0
  shift 2
  "$REWIND_CLI" "$@" >"$workdir/cli.out" 2>"$workdir/cli.err" || rc=$?
  [ "$rc" -eq "$want" ] || fail "rewind $*: exit $rc, expected $want ($(cat "$workdir/cli.err"))"
  [ "$(wc -l <"$workdir/cli.err")" -eq 1 ] ||
    fail "rewind $*: expected one error line, got: $(cat "$workdir/cli.err")"
  grep -qF -- "$msg" "$workdir/cli.err" || fail "rewind $*: no '$msg' in: $(cat "$workdir/cli.err")"
}

# mount_ext4 SOCK MKFS_OPTIONS...: a new ext4 on the export at SOCK, through nbdfuse
# and a loop device, mounted on $workdir/mnt; sets fuse_pid and loop.
mount_ext4() {
  local sock=$1 i
  shift
  mkdir -p "$workdir/fuse" "$workdir/mnt"
  nbdfuse "$workdir/fuse/disk" --unix "$sock" &
  fuse_pid=$!
  cleanup "fusermount3 -u $workdir/fuse || umount -l $workdir/fuse; kill $fuse_pid"
  for i in $(seq 1 100); do [ -e "$workdir/fuse/disk" ] && break; sleep 0.1; done
  [ -e "$workdir/fuse/disk" ] || fail "nbdfuse did not expose the disk"
  loop=$(losetup -f --show "$workdir/fuse/disk")
  # Loop devices are the machine's, shared by tests running side by side: once
  # unmount_ext4 has let this one go, another test may attach the same name, so the
  # exit detaches it only while this test still holds it (loop is cleared then).
  cleanup '[ -z "$loop" ] || losetup -d "$loop"'
  mkfs.ext4 -q "$@" "$loop"
  mount "$loop" "$workdir/mnt"
  cleanup "umount $workdir/mnt"
}

# unmount_ext4: unmount, detach the loop device, stop nbdfuse (all data flushed).
unmount_ext4() {
  umount "$workdir/mnt"
  losetup -d "$loop"
  loop=
  fusermount3 -u "$workdir/fuse"
  wait "$fuse_pid" || true
}

# start_ceph: a single-node Ceph with its S3 gateway (tests/support/ceph.sh) in
# $workdir/ceph, stopped when the script ends; exports AWS_ENDPOINT_URL and the keys.
start_ceph() {
  requires ceph-mon ceph-osd radosgw s3cmd
  ceph_sh=$(cd "$(dirname "${BASH_SOURCE[0]}")/../support" && pwd)/ceph.sh
  cleanup "$ceph_sh stop $workdir/ceph"
  "$ceph_sh" start "$workdir/ceph" >"$workdir/ceph.log" 2>&1 ||
    fail "the Ceph cluster did not start: $(cat "$workdir/ceph.log")"
  # shellcheck disable=SC1091
  source "$workdir/ceph/env"
}

# s3 ARGS...: s3cmd against the test cluster, with no configuration file of its own.
s3() {
  local host=${AWS_ENDPOINT_URL#http://}
  s3cmd -c /dev/null --no-ssl --host="$host" --host-bucket="$host" --region="$AWS_REGION" \
    --access_key="$AWS_ACCESS_KEY_ID" --secret_key="$AWS_SECRET_ACCESS_KEY" "$@"
}

# bucket_last s3://BUCKET/PREFIX: the newest seq the bucket's manifest says it holds
# (empty if there is no manifest yet: not a failure, so that `x=$(bucket_last ...)`
# does not end a script under `set -e -o pipefail` while a shipper starts).
bucket_last() {
  { s3 get "$1/MANIFEST" - 2>/dev/null || true; } | sed -n 's/^last \([0-9]*\)$/\1/p'
}

# write_phase SOCK JOURNAL N ROUNDS: ROUNDS rounds of random writes (256 KiB and 64 KiB)
# to the 64 MiB export at SOCK, each flushed; then a mark mN in JOURNAL, the state
# captured to mN.img with nbdcopy, and the time after it (RFC 3339) in time-mN.
write_phase() {
  local sock=$1 journal=$2 n=$3 rounds=$4 i
  for i in $(seq 1 "$rounds"); do
    qemu-io -f raw -t writeback -c "write -P $((RANDOM % 250 + 1)) $((RANDOM % 63))M 256k" \
      -c "write -P $((RANDOM % 250 + 1)) $((RANDOM % 16000 * 4))k 64k" -c flush \
      "$(uri_of "$sock")" >/dev/null
  done
  "$REWIND_CLI" mark "$journal" "m$n" >/dev/null
  nbdcopy "$(uri_of "$sock")" "m$n.img"
  date -u +%Y-%m-%dT%H:%M:%S.%NZ >"time-m$n"
  sleep 0.05
}

# --- sealed copies (ship-key=) --------------------------------------------------------

# secret_data PATTERN: secret.bin, 4 MiB of text made of PATTERN and counters
# (compressible, and easy to search for), and random.bin, 1 MiB of random data.
secret_data() {
  python3 -c "
import sys
text = ''.join('$1 line %08d\n' % i for i in range(120000)).encode()
sys.stdout.buffer.write(text[:4 << 20])" >secret.bin
  [ "$(stat -c %s secret.bin)" -eq $((4 << 20)) ] || fail "not 4 MiB of text to write"
  head -c 1M /dev/urandom >random.bin
}

# secret_phases SOCK JOURNAL: writes secret.bin and random.bin to the 32 MiB export at
# SOCK in three flushed phases, each ending in a mark (one, two, three) in JOURNAL whose
# state nbdcopy captures to truth-NAME.img; then waits until the shipper has sent
# every record (up to the journal's newest, not the shipper's own durable position,
# which it may not have looked at yet).
secret_phases() {
  local uri journal=$2 acked last
  uri=$(uri_of "$1")
  qemu-io -f raw -t writeback -c "write -s secret.bin 0 4M" -c flush "$uri" >/dev/null
  "$REWIND_CLI" mark "$journal" one >/dev/null
  nbdcopy "$uri" truth-one.img
  qemu-io -f raw -t writeback -c "write -s random.bin 8M 1M" -c "write -z 20M 1M" -c flush \
    "$uri" >/dev/null
  "$REWIND_CLI" mark "$journal" two >/dev/null
  nbdcopy "$uri" truth-two.img
  qemu-io -f raw -t writeback -c "write -P 0x33 12M 64k" -c "write -s secret.bin 5000 3000" \
    -c flush "$uri" >/dev/null
  "$REWIND_CLI" mark "$journal" three >/dev/null
  nbdcopy "$uri" truth-three.img
  last=$("$REWIND_CLI" info --json "$journal" | json_field '["last_seq"]')
  for _ in $(seq 300); do
    acked=$("$REWIND_CLI" info --json "$journal" | json_field '["ship"]["acked_seq"]')
    [ "$acked" = "$last" ] && return 0
    sleep 0.1
  done
  fail "the copy did not catch up (acknowledged seq $acked of $last)"
}

# expect_no_secret PATTERN JOURNAL DIR...: PATTERN is in JOURNAL (where it is in the
# clear: a check of the search), and neither it nor any 4 KiB block of random.bin
# (its first 64 bytes) is in any file under the DIRs.
expect_no_secret() {
  local pattern=$1 journal=$2
  shift 2
  grep -rqa "$pattern" "$journal" || fail "the pattern is not in $journal (a broken search?)"
  if grep -rla "$pattern" "$@"; then fail "the pattern is in the files above"; fi
  python3 - random.bin "$@" <<'PY' || fail "a block of the random data is in $*"
import os, sys
data = open(sys.argv[1], "rb").read()
blocks = [data[i:i + 64] for i in range(0, len(data), 4096)]
for top in sys.argv[2:]:
    for root, _, files in os.walk(top):
        for f in files:
            b = open(os.path.join(root, f), "rb").read()
            assert not any(x in b for x in blocks), os.path.join(root, f)
PY
}

# expect_restore_refused FROM WHAT ARGS...: `rewind restore FROM --mark two -o out.img
# ARGS` fails with one line on stderr (left in err.txt) and leaves no output file.
expect_restore_refused() {
  local from=$1 what=$2 err
  shift 2
  if "$REWIND_CLI" restore "$from" --mark two -o out.img "$@" 2>err.txt >/dev/null; then
    fail "a restore $what succeeded"
  fi
  err=$(cat err.txt)
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "a restore $what said more than one line: $err"
  [ ! -e out.img ] && [ ! -e out.img.rewind-tmp ] || fail "a restore $what left a file"
  echo "$what: $err"
}
