# nbd-client: the host's rewind export reaches the guest over a virtio-serial port
# (no IP networking), bridged to a UNIX socket by socat, and is attached as /dev/nbd0
# by the real nbd-client and the kernel's nbd driver. ext4 is made (with discard) and
# mounted with discard; files are written and some deleted; the host sets a mark, and
# fstrim discards the free space; everything is synced and the device detached.
nbdport=$(port nbdport) || fail "no nbdport"
socat UNIX-LISTEN:/run/nbd.sock,unlink-early "OPEN:$nbdport" &
for i in $(seq 1 50); do [ -S /run/nbd.sock ] && break; sleep 0.1; done
nbd-client -unix /run/nbd.sock /dev/nbd0 -N "" -b 4096 -t 60 || fail "nbd-client could not attach"
mkfs.ext4 -q -E discard /dev/nbd0
mount -o discard /dev/nbd0 /mnt
mkdir /mnt/keep /mnt/gone
for i in 1 2 3 4; do head -c $((i * 256 * 1024)) /dev/urandom >/mnt/keep/f$i; done
for i in 1 2 3; do head -c $((2 * 1024 * 1024)) /dev/urandom >/mnt/gone/g$i; done
sync
rm -r /mnt/gone
sync
say "deleted"
wait_host marked
fstrim -v /mnt >/tmp/fstrim.out || fail "fstrim"
say "$(cat /tmp/fstrim.out)"
sync
checksums /mnt file
umount /mnt
nbd-client -d /dev/nbd0 || fail "nbd-client -d"
say "detached"
