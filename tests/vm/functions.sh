# Shared by the guest tests (tests/vm/test-vm-*.sh): sourced, never run. Builds on the
# end-to-end helpers (server, cleanup, fail) and adds a QEMU guest built by
# tests/vm/build-guest.sh (CTest sets REWIND_GUEST to its folder).
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/functions.sh"
: "${REWIND_GUEST:?set by CTest: folder of the guest built by tests/vm/build-guest.sh}"
requires qemu-system-x86_64 socat debugfs e2fsck sha256sum
for f in vmlinuz initrd.img accel; do
  [ -f "$REWIND_GUEST/$f" ] || fail "no $REWIND_GUEST/$f: run tests/vm/build-guest.sh $REWIND_GUEST"
done

# boot_guest SCENARIO QEMU_ARGS...: starts the guest in the background with the
# scenario tests/vm/guest/scenario-SCENARIO.sh, its console in $workdir/console.log
# and a "ctl" port for wait_host (send_guest); sets qemu_pid. QEMU dies with this
# script, even if the script is killed (a test timeout).
boot_guest() {
  local scenario=$1 accel cpu
  shift
  accel=$(cat "$REWIND_GUEST/accel")
  cpu=max
  [ "$accel" = kvm ] && cpu=host
  : >"$workdir/console.log"
  setpriv --pdeathsig KILL qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 1 -m 512 -nodefaults -display none \
    -monitor none -no-reboot -serial "file:$workdir/console.log" \
    -kernel "$REWIND_GUEST/vmlinuz" -initrd "$REWIND_GUEST/initrd.img" \
    -append "console=ttyS0 quiet panic=-1 rewind.scenario=$scenario" \
    -device virtio-rng-pci -device virtio-serial-pci \
    -chardev "socket,id=ctl,path=$workdir/ctl.sock,server=on,wait=off" \
    -device virtserialport,chardev=ctl,name=ctl "$@" 2>"$workdir/qemu.log" &
  qemu_pid=$!
  cleanup "kill -KILL $qemu_pid"
}

# boot_on_rewind_disk SCENARIO: serves $workdir/disk.img (64 MiB; journal disk.rewind)
# and boots the guest with it as its virtio disk, attached as the README shows it
# (discards reach rewind; QEMU would reconnect across a server restart).
boot_on_rewind_disk() {
  truncate -s 64M "$workdir/disk.img"
  start_server "$workdir/nbd.sock" image="$workdir/disk.img" journal="$workdir/disk.rewind"
  boot_guest "$1" -blockdev \
    "driver=nbd,node-name=d0,server.type=unix,server.path=$workdir/nbd.sock,export=,reconnect-delay=10,discard=unmap" \
    -device virtio-blk-pci,drive=d0
}

# wait_console PATTERN SECONDS: waits until a console line matches "REWIND-VM: PATTERN".
wait_console() {
  local pattern=$1 deadline=$((SECONDS + $2))
  while ! tr -d '\r' <"$workdir/console.log" | grep -q "REWIND-VM: $pattern"; do
    if grep -q "REWIND-VM: FAIL" "$workdir/console.log" || ! kill -0 "$qemu_pid" 2>/dev/null; then
      guest_failed "the guest stopped before '$pattern'"
    fi
    [ "$SECONDS" -lt "$deadline" ] || guest_failed "no '$pattern' from the guest within $2 s"
    sleep 0.2
  done
}

# wait_guest SECONDS: waits for the guest to power off after its scenario succeeded.
wait_guest() {
  wait_console "exit" "$1"
  local i
  for i in $(seq 1 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$qemu_pid" 2>/dev/null || true
  tr -d '\r' <"$workdir/console.log" | grep -q "REWIND-VM: exit 0$" || guest_failed "the scenario failed"
}

guest_failed() {
  echo "--- guest console" >&2
  tr -d '\r' <"$workdir/console.log" | tail -n 40 >&2
  echo "--- qemu" >&2
  tail -n 20 "$workdir/qemu.log" >&2
  fail "$1"
}

# send_guest WORD: what the guest's wait_host waits for.
send_guest() {
  printf "%s\n" "$1" | socat - "UNIX-CONNECT:$workdir/ctl.sock" || guest_failed "cannot reach the guest's ctl port"
}

# reported PREFIX: the "SHA256 PATH" lines the guest printed as "REWIND-VM: PREFIX ...".
reported() {
  tr -d '\r' <"$workdir/console.log" | sed -n "s/^.*REWIND-VM: $1 //p"
}

# check_files IMAGE LIST: IMAGE (ext4) holds exactly the files of LIST ("SHA256 PATH"
# lines, paths relative to the root, lost+found aside), each with that checksum.
check_files() {
  local image=$1 list=$2 sum path got dump=$workdir/dump
  [ -s "$list" ] || fail "no files reported by the guest"
  while read -r sum path; do
    got=$(debugfs -R "cat /$path" "$image" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail "$image: /$path differs from what the guest wrote"
  done <"$list"
  rm -rf "$dump"
  mkdir "$dump"
  debugfs -R "rdump / $dump" "$image" >/dev/null 2>&1 || fail "debugfs cannot read $image"
  local listed expected
  listed=$(cd "$dump" && find . -type f ! -path './lost+found/*' | sed 's|^\./||' | sort)
  expected=$(cut -d' ' -f2 "$list" | sort)
  [ "$listed" = "$expected" ] || fail "$image holds [$listed], expected [$expected]"
  rm -rf "$dump"
}
