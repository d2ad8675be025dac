# An application-consistent mark: the QEMU guest agent runs in the guest, ext4 on
# /dev/vda is written all the time by a loop, and the host takes a mark with
# `rewind mark --freeze qga:`. After the host says it marked, the loop must still be
# writing (the thaw happened). Then the agent's freeze hook is made to take 6 s, so
# that the host's next mark times out: the guest must still be thawed by the thaw the
# host sent after it, and go on writing. Reports the files written before the freeze
# began as "before" and every file at the end as "final".
dev=$(port org.qemu.guest_agent.0) || fail "no guest agent port"
cat >/run/fsfreeze-hook <<'HOOK'
#!/bin/sh
[ "$1" = freeze ] && [ -e /tmp/slow ] && sleep 6
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
# The late freeze and then the host's thaw reach the file system: it must be writable
# again within 30 s.
a=$(cat /tmp/count)
for _ in $(seq 150); do [ "$(cat /tmp/count)" -gt "$a" ] && break; sleep 0.2; done
[ "$(cat /tmp/count)" -gt "$a" ] || fail "the writer is stuck at $a: left frozen"
say "thawed after the timeout"
touch /tmp/stop
wait "$writer"
checksums /mnt final
umount /mnt
