#!/usr/bin/env bash
# rewind serve --writable: a point served read-write into a throwaway overlay (nbdkit's
# cow filter) reads as the point, takes writes, and leaves nothing behind: the journal
# and the image are unchanged and the next export of the point has none of the
# writes. With --overlay FILE the overlay (qcow2, served by qemu-nbd) is kept, and a
# later export of the same point goes on from it; an overlay of another point, or a
# file that is not one, is refused with one line. A clone of a volume that is still
# served and written and the volume do not see each other's writes.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io qemu-img qemu-nbd nbdcopy

cd "$workdir"
mkdir tmp
export TMPDIR=$workdir/tmp
truncate -s 8M disk.img
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind
uri=$(uri_of "$workdir/disk.sock")
qemu-io -f raw -c "write -P 0x11 0 2M" -c flush "$uri" >/dev/null
"$REWIND_CLI" mark disk.rewind m1 >/dev/null
nbdcopy "$uri" truth-m1.img
qemu-io -f raw -c "write -P 0x22 1M 2M" -c flush "$uri" >/dev/null
"$REWIND_CLI" mark disk.rewind m2 >/dev/null
stop_server
sums() { find disk.rewind disk.img -type f -print0 | sort -z | xargs -0 sha256sum; }
sums >before.sums

# serve_point ARGS...: rewind serve disk.rewind ARGS in the background on clone.sock;
# sets serve_pid once it prints the URI.
serve_point() {
  "$REWIND_CLI" serve disk.rewind --socket "$workdir/clone.sock" "$@" >serve.out 2>serve.err &
  serve_pid=$!
  cleanup "kill $serve_pid"
  for _ in $(seq 1 200); do grep -q '^nbd+unix' serve.out 2>/dev/null && break; sleep 0.05; done
  grep -q '^nbd+unix' serve.out || fail "rewind serve $*: $(cat serve.err)"
}
stop_point() {
  kill -TERM "$serve_pid"
  wait "$serve_pid" || fail "rewind serve exited with status $?: $(cat serve.err)"
}
clone=$(uri_of "$workdir/clone.sock")

# A throwaway overlay.
serve_point --mark m1 --writable
nbdcopy "$clone" served.img
cmp served.img truth-m1.img || fail "the writable export of m1 does not read as m1"
qemu-io -f raw -c "write -P 0x5a 4M 64k" -c "read -P 0x5a 4M 64k" -c "read -P 0x11 0 64k" \
  "$clone" | grep -q "Pattern verification failed" && fail "the writable export reads wrong"
stop_point
[ -z "$(ls -A tmp)" ] || fail "the throwaway overlay left $(ls -A tmp)"
sums | cmp -s - before.sums || fail "a writable export changed the journal or the image"
serve_point --mark m1 --writable
nbdcopy "$clone" served.img
cmp served.img truth-m1.img || fail "a write of the last export outlived it"
stop_point

# A kept overlay.
serve_point --mark m1 --writable --overlay ov.qcow2
grep -q "writes go to the overlay ov.qcow2 (qcow2), kept after stop" serve.out ||
  fail "rewind serve does not say the overlay is kept: $(cat serve.out)"
qemu-io -f raw -c "write -P 0x5a 4M 64k" -c "write -z 0 4k" "$clone" >/dev/null
stop_point
[ "$(stat -c %a ov.qcow2)" = 600 ] || fail "the overlay is mode $(stat -c %a ov.qcow2), not 600"
sums | cmp -s - before.sums || fail "an export with a kept overlay changed the journal or the image"
serve_point --mark m1 --writable --overlay ov.qcow2
nbdcopy "$clone" served.img
stop_point
python3 - served.img truth-m1.img <<'PY' || fail "the kept overlay's writes did not come back"
import sys
got, want = (bytearray(open(p, "rb").read()) for p in sys.argv[1:3])
want[4 << 20:(4 << 20) + (64 << 10)] = b"\x5a" * (64 << 10)
want[0:4096] = bytes(4096)
assert got == want
PY
[ -z "$(ls -A tmp)" ] || fail "an export with a kept overlay left $(ls -A tmp)"

expect_cli 1 "was made over another point" serve disk.rewind --mark m2 --writable \
  --overlay ov.qcow2 --socket "$workdir/no.sock"
cp truth-m1.img raw.img
expect_cli 1 "is not a qcow2 overlay made by rewind serve (it is raw)" serve disk.rewind \
  --mark m1 --writable --overlay raw.img --socket "$workdir/no.sock"
expect_cli 2 "--overlay keeps the overlay of a writable export" serve disk.rewind --mark m1 \
  --overlay new.qcow2 --socket "$workdir/no.sock"
[ ! -e new.qcow2 ] && [ ! -e "$workdir/no.sock" ] || fail "a refused serve left files"
cmp raw.img truth-m1.img || fail "a refused overlay was changed"

# A clone of a volume that is still served and written: neither sees the other's
# writes, and the clone reads as the mark where neither wrote.
start_server "$workdir/disk.sock" image=disk.img journal=disk.rewind
serve_point --mark m1 --writable
qemu-io -f raw -c "write -P 0x77 6M 64k" -c flush "$clone" >/dev/null
qemu-io -f raw -c "write -P 0x88 6M 64k" -c "write -P 0x99 0 64k" -c flush "$uri" >/dev/null
# verify URI PATTERN OFFSET: the 64 KiB at OFFSET read back as PATTERN.
verify() {
  local out
  out=$(qemu-io -f raw -r -c "read -P $2 $3 64k" "$1" 2>&1)
  grep -q "^read 65536/65536 bytes" <<<"$out" && ! grep -q "verification failed" <<<"$out"
}
verify "$clone" 0x77 6M || fail "the clone lost its write to the live volume's"
verify "$clone" 0x11 0 || fail "the clone sees the live volume's later write"
verify "$uri" 0x88 6M || fail "the live volume sees the clone's write"
verify "$uri" 0x99 0 || fail "the live volume lost its write"
stop_point
stop_server
echo "PASS"
