#!/usr/bin/env bash
# Another local user (created for this test, removed after) can read nothing of a
# served volume's journal, a restored image or a log server's store, and the links and
# files they plant are never followed or written into:
# - the journal is 0700 with files 0600 although nbdkit runs with umask 0022;
# - `rewind restore -o OUT` into a directory the intruder may write creates its
#   temporary anew (a planted link to a root-only file is removed, not followed) and
#   leaves OUT root's, 0600;
# - a journal directory the intruder made (empty, or with a planted MANIFEST.tmp link)
#   and one its group may write are refused at start, and nothing is written;
# - the store of rewind-server and what is shipped into it are private as well.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io setpriv useradd userdel
: "${REWIND_SHIP:?set by CTest}" "${REWIND_SERVER:?set by CTest}"

cd "$workdir"
user=rwd-t$$
useradd --no-create-home --user-group --shell /usr/sbin/nologin "$user"
cleanup "userdel $user"
as_intruder() { setpriv --reuid="$user" --regid="$user" --clear-groups "$@"; }
# The intruder may enter the work directory, as any shared directory of a host.
chmod 755 "$workdir"
echo "root's secret" >root-only
chmod 600 root-only
cp root-only root-only.orig

# private PATH: PATH is 0700 and everything under it 0700 (directories) or 0600.
private() {
  [ "$(stat -c %a "$1")" = 700 ] || fail "$1 has mode $(stat -c %a "$1"), not 700"
  local wide
  wide=$(find "$1" -mindepth 1 \( -type d ! -perm 700 -o -type f ! -perm 600 \) -printf '%m %p\n')
  [ -z "$wide" ] || fail "under $1, not private: $wide"
}
# unreadable PATH...: the intruder can list or read none of them.
unreadable() {
  local p
  for p in "$@"; do
    if as_intruder cat "$p" >/dev/null 2>&1 || { [ -d "$p" ] && as_intruder ls "$p" >/dev/null 2>&1; }; then
      fail "the intruder can read $p"
    fi
  done
}

# A served volume: its journal is private under nbdkit's umask 0022.
truncate -s 4M vol.img
chmod 600 vol.img
start_server "$workdir/vol.sock" image=vol.img journal=vol.rewind
qemu-io -f raw -t writeback -c 'write -P 0x5a 0 1M' -c flush "$(uri_of "$workdir/vol.sock")" >/dev/null
stop_server
private vol.rewind
unreadable vol.rewind vol.rewind/MANIFEST vol.rewind/base/* vol.rewind/segments/*

# A restore: private output, and a planted temporary is replaced, never followed.
"$REWIND_CLI" restore vol.rewind -o restored.img >/dev/null
[ "$(stat -c %a restored.img)" = 600 ] || fail "restored.img has mode $(stat -c %a restored.img)"
unreadable restored.img
mkdir -m 777 drop
chown "$user:$user" drop
as_intruder ln -s "$workdir/root-only" drop/out.img.rewind-tmp
as_intruder touch drop/out2.img.rewind-tmp
as_intruder chmod 666 drop/out2.img.rewind-tmp
"$REWIND_CLI" restore vol.rewind -o drop/out.img >/dev/null
"$REWIND_CLI" restore vol.rewind -o drop/out2.img >/dev/null
cmp -s root-only root-only.orig || fail "restore wrote through the planted link to root-only"
for out in drop/out.img drop/out2.img; do
  [ -f "$out" ] && [ ! -L "$out" ] || fail "$out is not a regular file"
  [ "$(stat -c '%U %a' "$out")" = "root 600" ] ||
    fail "$out is $(stat -c '%U %a' "$out"), not root's and 0600"
  cmp -s "$out" restored.img || fail "$out differs from the volume"
done
unreadable drop/out.img drop/out2.img

# refused_journal DIR WANT: serving DIR as the journal fails at start, saying WANT.
refused_journal() {
  local rc=0
  cp vol.img other.img
  timeout 20 nbdkit -f -U "$workdir/refused.sock" "$REWIND_PLUGIN" image=other.img \
    journal="$1" 2>err || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "journal=$1 was served (exit $rc)"
  grep -qF -- "$2" err || fail "journal=$1: no '$2' in: $(cat err)"
}
# A journal directory the intruder made, empty or with a planted link.
as_intruder mkdir -m 755 drop/empty drop/planted
as_intruder ln -s "$workdir/root-only" drop/planted/MANIFEST.tmp
refused_journal drop/empty "belongs to uid $(id -u "$user"), not to this user (uid 0)"
refused_journal drop/planted "belongs to uid $(id -u "$user"), not to this user (uid 0)"
cmp -s root-only root-only.orig || fail "serving wrote through the planted MANIFEST.tmp"
[ -z "$(ls -A drop/empty)" ] || fail "something was created in the intruder's directory"
# One of root's that its group may write into.
mkdir -m 775 group-journal
refused_journal group-journal "can be written by its group (mode 0775)"
[ -z "$(ls -A group-journal)" ] || fail "something was created in a refused journal directory"
# One of root's that others may only read (an older journal): made private.
mv vol.rewind old.rewind
chmod 755 old.rewind
start_server "$workdir/vol.sock" image=vol.img journal=old.rewind
stop_server
[ "$(stat -c %a old.rewind)" = 700 ] || fail "an open journal was not made private"
grep -q "journal $workdir/old.rewind was readable by others (mode 0755); made it private" \
  server.log || fail "the plugin did not say it made the journal private: $(cat server.log)"

# A log server's store, created by the server and shipped into.
printf 'tok vol\n' >tokens
chmod 600 tokens
start_log_server 127.0.0.1:0 --store "$workdir/store" --tokens tokens --insecure-loopback
"$REWIND_SHIP" old.rewind 127.0.0.1 "$port" vol tok >/dev/null || fail "shipping to the store"
kill -TERM "$log_server_pid"
wait "$log_server_pid" || true
private store
unreadable store store/vol store/vol/base/* store/vol/segments/* tokens
echo "PASS"
