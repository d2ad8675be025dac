#!/usr/bin/env bash
# A VM crash: QEMU is killed with SIGKILL while the guest writes and syncs files in a
# loop on a rewind disk, and the server is killed too. The newest state restored from
# the journal passes `e2fsck -fp` with nothing to do but replay ext4's journal, and
# every file the guest reported as synced is there, intact.
source "$(dirname "$0")/functions.sh"

cd "$workdir"
boot_on_rewind_disk crash

# Let some files be synced, then pull the plug at a random moment.
wait_console "synced .* files/f8$" 180
sleep "$((RANDOM % 150))e-2"
kill -KILL "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null || true
reported synced >synced.txt
echo "killed after $(wc -l <synced.txt) files were synced"

"$REWIND_CLI" restore disk.rewind -o newest.img >restore.log 2>&1 || { cat restore.log; fail "restore after the crash"; }
rc=0
e2fsck -fp newest.img >fsck.log 2>&1 || rc=$?
# 0: clean; 1: fixed, which is allowed only for replaying ext4's own journal.
[ "$rc" -le 1 ] || { cat fsck.log; fail "e2fsck -fp exit $rc"; }
if grep -v -e 'recovering journal' -e 'clean, ' -e 'files (.* non-contiguous)' fsck.log | grep -q .; then
  cat fsck.log
  fail "e2fsck -fp repaired more than ext4's journal"
fi
e2fsck -fn newest.img >fsck-n.log 2>&1 || { cat fsck-n.log; fail "e2fsck -fn after the journal replay"; }
while read -r sum path; do
  got=$(debugfs -R "cat /$path" newest.img 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ "$got" = "$sum" ] || fail "/$path was reported synced but is not intact after the crash"
done <synced.txt
echo "PASS: after kill -9 of QEMU and the server, every synced file is intact and ext4 clean"
