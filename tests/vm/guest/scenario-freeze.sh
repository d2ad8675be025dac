# An application-consistent mark: the QEMU guest agent runs in the guest, ext4 on
# /dev/vda is written all the time by a loop, and the host takes a mark with
# `rewind mark --freeze qga:`. After the host says it marked, the loop must still be
# writing (the thaw happened). Then the agent's freeze hook is made to take 6 s, so
# that the host's next mark times out, and the agent freezes after the host gave up on
# the freeze: the guest must still be thawed by the thaw the host sent after it, and go
# on writing. The hook records when that late freeze and its thaw have run, so that
# the checks wait for the thaw itself and not for the writer alone, which goes on
# while the hook sleeps. Reports the files written before the freeze began as
# "before" and every file at the end as "final".
dev=$(port org.qemu.guest_agent.0) || fail "no guest agent port"
cat >/run/fsfreeze-hook <<'HOOK'
#!/bin/sh
# qemu-ga runs the hook before its freeze and after its thaw.
if [ "$1" = freeze ] && [ -e /tmp/slow ]; then
  sleep 6
  touch /tmp/late-freeze
elif [ "$1" = thaw ] && [ -e /tmp/late-freeze ]; then
  touch /tmp/late-thaw
fi
exit 0
HOOK
chmod +x /run/fsfreeze-hook
/usr/sbin/qemu-ga -m virtio-serial -p "$dev" -t /run -f /run/qemu-ga.pid -F/run/fsfreeze-hook -d ||
  fail "qemu-ga did not start"
mkfs.ext4 -q /dev/vda
mount /dev/vda /mnt
mkdir /mnt/log
head -c 200000 /dev/urandom >/mnt/base
sync
checksums /mnt before
# The writer: a file every 50 ms, each synced. Its count is replaced whole (a rename),
# so that a reader never sees it empty between a truncation and the write.
(i=0; while [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  head -c 20000 /dev/urandom >"/mnt/log/f$i" && sync "/mnt/log/f$i"
  echo "$i" >/tmp/count.new && mv /tmp/count.new /tmp/count
  sleep 0.05
done) &
writer=$!
sleep 1
say "writing"
wait_host marked
a=$(cat /tmp/count)
sleep 2
b=$(cat /tmp/count)
[ "$b" -gt "$a" ] || fail "the writer stopped at $a after the mark (still frozen?)"
say "went on from $a to $b"
touch /tmp/slow
say "slow"
wait_host timed-out
rm /tmp/slow
# The late freeze and then the host's thaw reach the file system: the thaw must come
# within 30 s, and the writer go on after it.
for _ in $(seq 150); do [ -e /tmp/late-thaw ] && break; sleep 0.2; done
[ -e /tmp/late-freeze ] || fail "the late freeze never ran its hook"
[ -e /tmp/late-thaw ] || fail "no thaw after the late freeze: left frozen"
a=$(cat /tmp/count)
for _ in $(seq 150); do [ "$(cat /tmp/count)" -gt "$a" ] && break; sleep 0.2; done
[ "$(cat /tmp/count)" -gt "$a" ] || fail "the writer is stuck at $a after the thaw"
say "thawed after the timeout"
touch /tmp/stop
wait "$writer"
checksums /mnt final
umount /mnt
