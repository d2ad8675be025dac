#!/usr/bin/env bash
# A writable test clone of a VM's disk: the disk-mark scenario leaves an ext4 volume
# with a mark; then a VM boots twice from that mark through `rewind serve --writable`,
# each time writing, deleting and changing files before it powers off. The volume's
# journal and image are byte-identical before and after, and the second boot sees none
# of the first one's writes (it finds exactly the files of the mark).
source "$(dirname "$0")/functions.sh"

cd "$workdir"
boot_on_rewind_disk disk
wait_console frozen 120
"$REWIND_CLI" mark disk.rewind phase-1 >/dev/null || fail "rewind mark while the guest is frozen"
send_guest marked
wait_guest 120
stop_server
reported phase-1 >phase-1.txt
[ "$(wc -l <phase-1.txt)" -eq 6 ] || fail "the guest reported $(wc -l <phase-1.txt) phase-one files"
sums() { find disk.rewind disk.img -type f -print0 | sort -z | xargs -0 sha256sum; }
sums >before.sums

for boot in 1 2; do
  "$REWIND_CLI" serve disk.rewind --mark phase-1 --writable --socket "$workdir/clone.sock" \
    >serve.out 2>serve.err &
  serve_pid=$!
  cleanup "kill $serve_pid"
  for _ in $(seq 1 200); do grep -q '^nbd+unix' serve.out 2>/dev/null && break; sleep 0.05; done
  grep -q '^nbd+unix' serve.out || fail "rewind serve --writable: $(cat serve.err)"
  grep -q "writable as it was at seq .*throwaway overlay" serve.out ||
    fail "rewind serve does not say the export is writable: $(cat serve.out)"
  boot_guest clone -blockdev \
    "driver=nbd,node-name=d0,server.type=unix,server.path=$workdir/clone.sock,export=" \
    -device virtio-blk-pci,drive=d0
  wait_guest 180
  kill -TERM "$serve_pid"
  wait "$serve_pid" || fail "rewind serve --writable exited with status $?: $(cat serve.err)"
  [ ! -e "$workdir/clone.sock" ] || fail "rewind serve left its socket"
  reported clone-before >"before-$boot.txt"
  reported clone-after >"after-$boot.txt"
  # Each boot starts from exactly the mark's files; its own writes were there for it.
  diff phase-1.txt "before-$boot.txt" || fail "boot $boot of the clone did not see the mark's files"
  grep -q " clone-boot$" "after-$boot.txt" || fail "boot $boot did not see its own write"
  grep -q " data/a1$" "after-$boot.txt" && fail "boot $boot did not see its own delete"
  sums | cmp -s - before.sums || fail "boot $boot of the clone changed the journal or the image"
done
# The two boots wrote different random data: neither overlay outlived its export.
[ "$(grep " clone-boot$" after-1.txt)" != "$(grep " clone-boot$" after-2.txt)" ] ||
  fail "both boots report the same clone-boot file"
"$REWIND_CLI" verify disk.rewind --image disk.img >/dev/null || fail "rewind verify --image"
echo "PASS: two boots of a writable clone of mark phase-1, the volume unchanged"
