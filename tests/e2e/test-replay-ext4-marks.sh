#!/usr/bin/env bash
# ext4 on a rewind export (nbdfuse + loop), with a mark after each round of file
# changes, taken while the file system is frozen (as a backup agent would). Restoring
# at each mark gives a file system that e2fsck finds clean, holding exactly the files
# that existed then, with their contents.
source "$(dirname "$0")/functions.sh"
requires nbdkit nbdfuse losetup mkfs.ext4 e2fsck debugfs fsfreeze sha256sum
[ "$(id -u)" -eq 0 ] || fail "needs root (loop devices and mount)"

cd "$workdir"
truncate -s 128M disk.img
sock=$workdir/nbd.sock
start_server "$sock" image=disk.img journal=disk.rewind flush-interval=50ms
mount_ext4 "$sock"

snapshot() {  # snapshot NAME: mark the frozen file system, record its files
  (cd mnt && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >"files-$1.txt"
  fsfreeze -f mnt
  "$REWIND_CLI" mark disk.rewind "$1" >/dev/null || { fsfreeze -u mnt; fail "mark $1"; }
  fsfreeze -u mnt
}

mkdir -p mnt/docs mnt/data
for i in 1 2 3 4 5; do head -c $((i * 50 * 1024)) /dev/urandom >"mnt/data/a$i"; done
echo "first version" >mnt/docs/readme
snapshot round-1
rm mnt/data/a2
head -c 2M /dev/urandom >mnt/data/big
echo "second version" >mnt/docs/readme
snapshot round-2
rm -r mnt/docs
for i in 1 3; do head -c 100K /dev/urandom >"mnt/data/a$i"; done
mkdir mnt/new && head -c 700K /dev/urandom >mnt/new/file
snapshot round-3
unmount_ext4
stop_server

for round in round-1 round-2 round-3; do
  "$REWIND_CLI" restore disk.rewind --mark "$round" -o "$round.img" >/dev/null
  e2fsck -fn "$round.img" >"fsck-$round.log" 2>&1 || { cat "fsck-$round.log"; fail "e2fsck at $round"; }
  # Exactly the files of that round: same list, same contents.
  debugfs -R 'ls -p /' "$round.img" >/dev/null 2>&1 || fail "debugfs cannot read $round"
  while read -r sum path; do
    got=$(debugfs -R "cat /${path#./}" "$round.img" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail "$path at $round: checksum differs"
  done <"files-$round.txt"
  listed=$(debugfs -R 'rdump / dump' "$round.img" >/dev/null 2>&1; rm -rf "dump-$round"; mkdir "dump-$round";
           debugfs -R "rdump / $workdir/dump-$round" "$round.img" >/dev/null 2>&1;
           (cd "dump-$round" && find . -type f ! -path './lost+found/*' | sort))
  expected=$(cut -d' ' -f3 "files-$round.txt" | sort)
  [ "$listed" = "$expected" ] || fail "files at $round: got [$listed], expected [$expected]"
  rm -rf "dump-$round" "$round.img"
done
echo "PASS: ext4 restored at every mark"
