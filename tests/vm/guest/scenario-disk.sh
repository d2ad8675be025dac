# VM disk: /dev/vda is a rewind export. ext4 is made and written in two phases; between
# them the file system is frozen (as a backup agent would) and the host inserts a
# mark. Each phase's files are reported with their checksums.
mkfs.ext4 -q /dev/vda
mount /dev/vda /mnt
mkdir /mnt/docs /mnt/data
for i in 1 2 3 4 5; do head -c $((i * 48 * 1024)) /dev/urandom >/mnt/data/a$i; done
echo "phase one" >/mnt/docs/readme
checksums /mnt phase-1
fsfreeze --freeze /mnt
say "frozen"
wait_host marked
fsfreeze --unfreeze /mnt
# Phase two changes, removes and adds files.
head -c 300000 /dev/urandom >/mnt/data/a2
rm /mnt/data/a3
echo "phase two" >/mnt/docs/readme
mkdir /mnt/more
head -c 1000000 /dev/urandom >/mnt/more/big
checksums /mnt phase-2
umount /mnt
