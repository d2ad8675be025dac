#!/usr/bin/env bash
# rewind-server's --store: a missing store directory is created private to the
# server's user (0700) when its parent exists, and a volume shipped to it verifies;
# a store whose parent is missing, a store that is a file, a store others may write
# into and a store of another user are each refused at start with exit status 2 and
# one line that names the path, and nothing is created (nor by a server refused for
# another reason); a store others may read is made private; a TLS key or tokens file
# others may read is refused.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io setpriv openssl
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
printf 'tok vol\n' >tokens
chmod 600 tokens

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

# A store others may write into (they could plant files in it): refused, unchanged.
mkdir -m 770 group-store
refused "can be written by its group (mode 0770)" "$workdir/group-store"
[ "$(stat -c %a group-store)" = 770 ] && [ -z "$(ls -A group-store)" ] ||
  fail "a refused store was changed"
# One others may only read: made private, and the log says so.
mkdir -m 755 open-store
start_log_server 127.0.0.1:0 --store "$workdir/open-store" --tokens tokens --insecure-loopback
[ "$(stat -c %a open-store)" = 700 ] || fail "open-store has mode $(stat -c %a open-store), not 700"
grep -q "was readable by others (mode 0755); made it private" log-server.log ||
  fail "the server did not say it made the store private: $(cat log-server.log)"
kill -TERM "$log_server_pid"
wait "$log_server_pid" || true

# A TLS key others may read: refused, naming it.
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=localhost \
  2>/dev/null
chmod 640 key.pem
rc=0
"$REWIND_SERVER" --listen 127.0.0.1:0 --store "$workdir/new-store" --tokens tokens \
  --tls-cert cert.pem --tls-key key.pem 2>err || rc=$?
[ "$rc" -eq 2 ] && grep -qF "key.pem holds secrets but its group may read it (mode 0640)" err ||
  fail "a readable TLS key: exit $rc, $(cat err)"

# A tokens file others may read: refused, naming it.
chmod 644 tokens
rc=0
"$REWIND_SERVER" --listen 127.0.0.1:0 --store "$workdir/new-store" --tokens tokens \
  --insecure-loopback 2>err || rc=$?
[ "$rc" -eq 2 ] && grep -qF "tokens holds secrets but every user may read it (mode 0644)" err ||
  fail "a readable tokens file: exit $rc, $(cat err)"
chmod 600 tokens

# A store of another user's (a directory of root's, the server run as nobody, from a
# copy nobody may run: the build tree may be in root's 0700 home).
mkdir -m 700 roots-store
chmod 755 "$workdir"
chown nobody tokens
cp "$REWIND_SERVER" rewind-server
REWIND_SERVER=$workdir/rewind-server
refused "belongs to uid 0, not to this user" "$workdir/roots-store" \
  setpriv --reuid=nobody --regid=nogroup --clear-groups
[ -z "$(ls -A roots-store)" ] || fail "something was written into a store that was refused"
echo "PASS"
