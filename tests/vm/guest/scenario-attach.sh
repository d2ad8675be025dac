# scripts/rewind-attach on a Linux machine with the nbd module: the guest serves an
# image from its data disk (/dev/vda, ext4 made by the host) with the rewind plugin,
# attaches it as /dev/nbd0, makes ext4 on it, writes files, and detaches; its error
# paths are tried on the way. The host then checks the journal and the files.
[ -x /rewind/rewind-attach ] || fail "this guest was built without rewind (REWIND_PLUGIN)"
export REWIND_PLUGIN=/rewind/nbdkit-rewind-plugin.so REWIND_RUN_DIR=/run/rewind
mkdir -p /data
mount /dev/vda /data
if [ -s /rewind/preload ]; then
  # A sanitizer build: nbdkit runs with the plugin's runtime; reports go to the data
  # disk, where the host looks for them.
  mkdir -p /rewind/bin
  cat >/rewind/bin/nbdkit <<WRAP
#!/bin/sh
LD_PRELOAD="$(cat /rewind/preload | tr '\n' ' ')" \
ASAN_OPTIONS=log_path=/data/sanitizer:detect_leaks=0:verify_asan_link_order=0 \
UBSAN_OPTIONS=log_path=/data/sanitizer TSAN_OPTIONS=log_path=/data/sanitizer exec /usr/bin/nbdkit "\$@"
WRAP
  chmod +x /rewind/bin/nbdkit
  export PATH=/rewind/bin:$PATH
fi
attach=/rewind/rewind-attach

# expect_error MESSAGE ARGS...: rewind-attach fails, saying MESSAGE.
expect_error() {
  local msg=$1
  shift
  if "$attach" "$@" >/tmp/out 2>&1; then fail "rewind-attach $* succeeded"; fi
  grep -qF -- "$msg" /tmp/out || fail "rewind-attach $*: no '$msg' in: $(cat /tmp/out)"
}

truncate -s 64M /data/disk.img
"$attach" /data/disk.img --device /dev/nbd0 flush-interval=50ms >/tmp/out 2>&1 ||
  fail "rewind-attach: $(cat /tmp/out)"
grep -q "attached /data/disk.img as /dev/nbd0 (journal /data/disk.rewind)" /tmp/out ||
  fail "unexpected: $(cat /tmp/out)"
"$attach" --list | grep -q "^/dev/nbd0 /data/disk.img " || fail "--list: $("$attach" --list)"
[ "$(cat /sys/block/nbd0/size)" -eq $((64 * 2048)) ] || fail "/dev/nbd0 is not 64 MiB"

truncate -s 16M /data/other.img
expect_error "/dev/nbd0 is in use" /data/other.img --device /dev/nbd0
expect_error "/data/disk.img is already attached as /dev/nbd0" /data/disk.img
expect_error "the rewind server did not start" /data/other.img --device /dev/nbd1 queue-max=banana
[ ! -e /data/other.rewind ] || fail "a failed attach left a journal"
expect_error "/dev/nbd1 was not attached by rewind-attach" --detach /dev/nbd1

mkfs.ext4 -q /dev/nbd0
mkdir -p /mnt
mount /dev/nbd0 /mnt
expect_error "/dev/nbd0 is mounted on /mnt" --detach /dev/nbd0
mkdir /mnt/dir
for i in 1 2 3; do head -c $((i * 100 * 1024)) /dev/urandom >/mnt/dir/f$i; done
checksums /mnt file
umount /mnt
"$attach" --detach /data/disk.img >/tmp/out 2>&1 || fail "--detach: $(cat /tmp/out)"
grep -q "detached /dev/nbd0" /tmp/out || fail "unexpected: $(cat /tmp/out)"
[ "$(cat /sys/block/nbd0/size)" -eq 0 ] || fail "/dev/nbd0 is still connected"
[ -z "$("$attach" --list)" ] || fail "--list after detach: $("$attach" --list)"
pidof nbdkit >/dev/null && fail "the server is still running after --detach"
rm /data/other.img
umount /data
