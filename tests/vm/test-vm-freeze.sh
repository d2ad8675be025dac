#!/usr/bin/env bash
# An application-consistent mark of a running VM: qemu-ga in the guest, a loop writing
# and syncing files on ext4, and `rewind mark --freeze qga:SOCKET` on the host. The
# file system restored at the mark is clean as it is (no journal to replay: e2fsck -fn
# passes and needs_recovery is not set) and holds the files written before; the guest
# went on writing after the mark (it was thawed), and the newest state holds all it
# wrote. A guest agent that does not answer in time (its freeze hook takes 6 s) fails
# the next mark within --freeze-timeout and marks nothing; the agent freezes the guest
# after that timeout, and rewind waits for it and thaws the guest before it exits.
source "$(dirname "$0")/functions.sh"
requires dumpe2fs

cd "$workdir"
truncate -s 64M disk.img
start_server "$workdir/nbd.sock" image=disk.img journal=disk.rewind
boot_guest freeze -blockdev \
  "driver=nbd,node-name=d0,server.type=unix,server.path=$workdir/nbd.sock,export=,discard=unmap" \
  -device virtio-blk-pci,drive=d0 \
  -chardev "socket,id=qga,path=$workdir/qga.sock,server=on,wait=off" \
  -device virtserialport,chardev=qga,name=org.qemu.guest_agent.0
wait_console writing 180
"$REWIND_CLI" mark disk.rewind app --freeze "qga:$workdir/qga.sock" --freeze-timeout 60s \
  >mark.out 2>mark.err || guest_failed "rewind mark --freeze: $(cat mark.err)"
cat mark.out
grep -q "^froze 1 file system(s) of the guest" mark.out || fail "no freeze: $(cat mark.out)"
grep -q "^thawed 1 file system(s) of the guest" mark.out || fail "no thaw: $(cat mark.out)"
send_guest marked
wait_console slow 120
start=$SECONDS
if "$REWIND_CLI" mark disk.rewind late --freeze "qga:$workdir/qga.sock" --freeze-timeout 2s \
  >late.out 2>late.err; then
  fail "a mark went through although the agent did not answer in time"
fi
[ "$(wc -l <late.err)" -eq 1 ] || fail "more than one error line: $(cat late.err)"
grep -q "did not answer within 2000 ms" late.err || fail "unclear: $(cat late.err)"
[ $((SECONDS - start)) -le 20 ] || fail "the late agent held rewind mark for $((SECONDS - start)) s"
grep -q "^thawed 1 file system(s) of the guest after the unanswered freeze$" late.out ||
  guest_failed "the late freeze was not thawed: $(cat late.out)"
echo "late agent: $(cat late.err)"
cat late.out
send_guest timed-out
wait_guest 180
"$REWIND_CLI" log disk.rewind | grep -q "^mark late " && fail "mark 'late' was taken"
tr -d '\r' <console.log | grep -q "REWIND-VM: thawed after the timeout" ||
  guest_failed "the guest was not thawed after the timed-out mark"
stop_server
reported "went on from" >/dev/null
tr -d '\r' <console.log | grep -q "REWIND-VM: went on from" ||
  guest_failed "the guest did not go on writing"

"$REWIND_CLI" restore disk.rewind --mark app -o at-mark.img >/dev/null
dumpe2fs -h at-mark.img 2>/dev/null | grep -q "^Filesystem features:.*needs_recovery" &&
  fail "the file system at the mark needs journal recovery: it was not frozen"
e2fsck -fn at-mark.img >fsck.log 2>&1 || { cat fsck.log; fail "e2fsck -fn at the mark"; }
# Every file from before the writer began is there, with its contents, and the log
# files at the mark are whole (each was synced before the next began).
reported before >before.txt
while read -r sum path; do
  got=$(debugfs -R "cat /$path" at-mark.img 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ "$got" = "$sum" ] || fail "/$path at the mark differs"
done <before.txt
reported final >final.txt
at_mark=$(debugfs -R "ls -p /log" at-mark.img 2>/dev/null | grep -c '/f[0-9]*/')
final=$(grep -c " log/f" final.txt)
[ "$at_mark" -gt 0 ] && [ "$final" -gt "$at_mark" ] ||
  fail "log files: $at_mark at the mark, $final at the end"
"$REWIND_CLI" restore disk.rewind -o newest.img >/dev/null
check_files newest.img final.txt
echo "PASS: a clean file system at the frozen mark ($at_mark log files), $final at the end"
