# An application-consistent mark: the QEMU guest agent runs in the guest, ext4 on
# /dev/vda is written all the time by a loop, and the host takes a mark with
# `rewind mark --freeze qga:`. After the host says it marked, the loop must still be
# writing (the thaw happened). Reports the files written before the freeze began as
# "before" and every file at the end as "final".
dev=$(port org.qemu.guest_agent.0) || fail "no guest agent port"
/usr/sbin/qemu-ga -m virtio-serial -p "$dev" -t /run -f /run/qemu-ga.pid -d ||
  fail "qemu-ga did not start"
mkfs.ext4 -q /dev/vda
mount /dev/vda /mnt
mkdir /mnt/log
head -c 200000 /dev/urandom >/mnt/base
sync
checksums /mnt before
# The writer: a file every 50 ms, each synced.
(i=0; while [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  head -c 20000 /dev/urandom >"/mnt/log/f$i" && sync "/mnt/log/f$i"
  echo "$i" >/tmp/count
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
touch /tmp/stop
wait "$writer"
checksums /mnt final
umount /mnt
