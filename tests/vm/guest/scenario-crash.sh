# VM crash: new files are written and synced in a loop until the host kills QEMU (200
# files at most, about 30 MiB; then it waits). After each sync the file is reported
# with its checksum: the host checks that every reported file survived.
mkfs.ext4 -q /dev/vda
mount /dev/vda /mnt
mkdir /mnt/files
i=0
while [ "$i" -lt 200 ]; do
  i=$((i + 1))
  head -c $(((i % 7 + 1) * 48 * 1024)) /dev/urandom >/mnt/files/f$i
  sync
  say "synced $(sha256sum /mnt/files/f$i | cut -d' ' -f1) files/f$i"
done
say "all written"
sleep 3600
