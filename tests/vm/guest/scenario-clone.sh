# A writable test clone: /dev/vda is a point in time that `rewind serve --writable`
# serves into a throwaway overlay. The guest mounts it (replaying ext4's journal into
# the overlay), reports what it holds, checks that no earlier boot of the clone left its
# file, then changes files and powers off.
mount /dev/vda /mnt
[ ! -e /mnt/clone-boot ] || fail "a file written by an earlier boot of the clone is there"
checksums /mnt clone-before
head -c 700000 /dev/urandom >/mnt/clone-boot
rm /mnt/data/a1
echo "changed by the clone" >/mnt/docs/readme
sync
checksums /mnt clone-after
umount /mnt
