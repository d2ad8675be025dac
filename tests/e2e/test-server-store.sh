#!/usr/bin/env bash
# rewind-server's --store: a missing store directory is created private to the
# server's user (0700) when its parent exists, and a volume shipped to it verifies;
# a store whose parent is missing, a store that is a file, and a store the server's
# user cannot write into are each refused at start with exit status 2 and one line that
# names the path, and nothing is created (nor by a server refused for another reason).
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io setpriv
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
printf 'tok vol\n' >tokens

# A missing store, in an existing parent: created, 0700, and usable.
start_log_server 127.0.0.1:0 --store "$workdir/new-store" --tokens tokens --insecure-loopback
[ -d new-store ] || fail "the missing store was not created"
[ "$(stat -c %a new-store)" = 700 ] || fail "the new store has mode $(stat -c %a new-store), not 700"
grep -q "created the store $workdir/new-store" log-server.log ||
  fail "the server did not say it created the store: $(cat log-server.log)"
truncate -s 4M vol.img
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind
qemu-io -f raw -t writeback -c 'write -P 7 0 1M' -c flush "$(uri_of "$workdir/vol.sock")" >/dev/null
stop_server
"$REWIND_SHIP" vol.rewind 127.0.0.1 "$port" vol tok >/dev/null || fail "shipping to the new store"
"$REWIND_CLI" verify new-store/vol >/dev/null || fail "the shipped volume does not verify"
kill -TERM "$log_server_pid"
wait "$log_server_pid" || true

# refused WHAT STORE [RUNNER...]: the server exits 2 at once with one line naming STORE.
refused() {
  local want=$1 store=$2 rc=0
  shift 2
  timeout 10 "$@" "$REWIND_SERVER" --listen 127.0.0.1:0 --store "$store" --tokens "$workdir/tokens" \
    --insecure-loopback 2>err >/dev/null || rc=$?
  [ "$rc" -eq 2 ] || fail "--store $store: exit $rc, expected 2 ($(cat err))"
  [ "$(wc -l <err)" -eq 1 ] || fail "--store $store: expected one line, got: $(cat err)"
  grep -qF -- "$want" err || fail "--store $store: no '$want' in: $(cat err)"
  grep -qF -- "$store" err || fail "--store $store: the line does not name the path: $(cat err)"
}
# A server refused for another reason (no TLS) creates no store.
rc=0
"$REWIND_SERVER" --listen 127.0.0.1:0 --store "$workdir/unmade" --tokens tokens 2>err || rc=$?
[ "$rc" -eq 2 ] && grep -q "TLS is required" err || fail "no TLS: exit $rc, $(cat err)"
[ ! -e unmade ] || fail "a server refused at start created its store"

refused "nor does its parent directory $workdir/no/such" "$workdir/no/such/store"
[ ! -e no ] || fail "a refused store's parents were created"
touch a-file
refused "is not a directory" "$workdir/a-file"
[ -f a-file ] || fail "a refused store that is a file was changed"

# A store the server's user may not write into (a directory of root's, the server run
# as nobody, from a copy nobody may run: the build tree may be in root's 0700 home).
mkdir -m 755 roots-store
chmod 755 "$workdir"
chmod 644 tokens
cp "$REWIND_SERVER" rewind-server
REWIND_SERVER=$workdir/rewind-server
refused "cannot write into" "$workdir/roots-store" setpriv --reuid=nobody --regid=nogroup --clear-groups
[ -z "$(ls -A roots-store)" ] || fail "something was written into a store that was refused"
echo "PASS"
