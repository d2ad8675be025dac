#!/usr/bin/env bash
# The README's first command: installs what is missing, builds the plugin and the
# `rewind` tool (not the test suite), and serves a journaled disk on a UNIX socket and
# on 127.0.0.1:10809 until Ctrl-C, which drains the queue, checkpoints the image, says
# so and exits 0. It can be run again and again on the same image.
#   scripts/demo.sh [IMAGE]     IMAGE defaults to demo/disk.img (1 GiB, sparse, created)
# REWIND_DEMO_PORT sets another TCP port.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh
scripts/build.sh --target nbdkit-rewind-plugin --target rewind

image=${1:-demo/disk.img}
mkdir -p "$(dirname "$image")"
if [ ! -e "$image" ]; then
  truncate -s 1G "$image"
  echo "demo: created a 1 GiB sparse image $image"
fi
image=$(realpath "$image")
journal=${image%.img}.rewind
run=$root/demo
mkdir -p "$run"
sock=$run/nbd.sock
uri="nbd+unix:///?socket=$sock"
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
cli=$root/build/cli/rewind
port=${REWIND_DEMO_PORT:-10809}

# nbdkit leaves its socket behind when it stops: a socket nobody answers on is stale.
if [ -S "$sock" ]; then
  if timeout 5 nbdinfo --size "$uri" >/dev/null 2>&1; then
    echo "demo: $sock is already served (another scripts/demo.sh?); stop that one first" >&2
    exit 1
  fi
  rm -f "$sock"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: something already listens on 127.0.0.1:$port; stop it, or set" \
    "REWIND_DEMO_PORT to another port" >&2
  exit 1
fi

server="" forwarder=""
# end PID: stops process PID (none if empty) with SIGTERM, waits for it and returns its
# exit status.
end() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null
}
# Ctrl-C reaches every process of the terminal's foreground group: nbdkit stops on it
# by itself (draining the queue and checkpointing the image in the plugin's cleanup),
# and this script waits for that, then reports.
stop() {
  trap '' INT TERM
  local status=0
  end "$forwarder" || true
  end "$server" || status=$?
  rm -f "$sock"
  if [ "$status" != 0 ]; then
    echo "demo: nbdkit exited with status $status while stopping; check the journal with:" \
      "$cli verify $journal --image $image" >&2
    exit 1
  fi
  # What the journal itself now says: its newest record and the image's checkpoint.
  local seqs
  seqs=$("$cli" info "$journal" --json 2>/dev/null | python3 -c '
import json, sys
i = json.load(sys.stdin)
print(i["last_seq"], i["checkpoint_seq"])' 2>/dev/null || echo "? ?")
  echo
  echo "demo: stopped; the queue was drained into the journal (newest seq ${seqs% *}) and the" \
    "image checkpointed (at seq ${seqs#* }). Journal: $journal; image: $image"
  exit 0
}
trap stop INT TERM

# fail_early PID WHAT [WHEN]: waits for PID, one of the servers, to exit by itself, then
# stops the other one and exits 1.
fail_early() {
  local status=0
  wait "$1" 2>/dev/null || status=$?
  echo "demo: $2 exited with status $status${3:+ $3}; its error is above" >&2
  if [ "$1" = "$server" ]; then server=""; else forwarder=""; fi
  end "$forwarder" || true
  end "$server" || true
  rm -f "$sock"
  exit 1
}

# Waits until URI answers, as long as process PID lives.
wait_until_served() {  # PID URI WHAT
  local tries=0
  until nbdinfo --size "$2" >/dev/null 2>&1; do
    kill -0 "$1" 2>/dev/null || fail_early "$1" "$3" "before serving $2"
    tries=$((tries + 1))
    [ $tries = 50 ] && echo "demo: waiting for $3 to serve $2 (a first serve of a large image copies it)"
    sleep 0.1
  done
}

nbdkit -f -U "$sock" "$plugin" image="$image" journal="$journal" &
server=$!
wait_until_served "$server" "$uri" "nbdkit (the rewind plugin)"
# TCP clients reach the same server through nbdkit's nbd plugin (one process owns the
# journal; the forwarder passes FLUSH and FUA through).
nbdkit -f -i 127.0.0.1 -p "$port" nbd socket="$sock" &
forwarder=$!
wait_until_served "$forwarder" "nbd://127.0.0.1:$port" "nbdkit (the TCP forwarder)"

# Each hint says what it needs beyond what this script installed.
pad=$'\n''                       '
needs() {  # COMMAND PACKAGE: a note when COMMAND is missing
  command -v "$1" >/dev/null || printf '%s' "$pad(needs: apt-get install $2)"
}
nbd_notes=$(needs nbd-client nbd-client)
[ -e /sys/module/nbd ] || nbd_notes+="$pad(needs the kernel module: modprobe nbd)"
qemu_notes=$(needs qemu-system-x86_64 qemu-system-x86)
# `rewind` by its name: the one on PATH (installed), else this build's, with the PATH
# line that puts it there.
path_note=
if ! command -v rewind >/dev/null; then
  path_note="$pad(rewind is $cli: export PATH=$(dirname "$cli"):\$PATH, or cmake --install build)"
fi

cat <<MSG

rewind is serving $image
  journal:     $journal
  UNIX socket: $uri
  TCP:         nbd://127.0.0.1:$port

Attach it:
  Linux block device:  nbd-client -unix $sock /dev/nbd0 -b 4096 -C 4 -t 60 -N ""
                       (or over TCP: nbd-client 127.0.0.1 $port /dev/nbd0 -N "")$nbd_notes
  QEMU virtual disk:   qemu-system-x86_64 ... -drive file=nbd://127.0.0.1:$port,format=raw,cache=writeback,discard=unmap$qemu_notes
  FUSE file + loop:    mkdir -p /mnt/rw && nbdfuse /mnt/rw/disk --unix $sock &
                       losetup -f --show /mnt/rw/disk
  Write and read back: qemu-io -f raw -t writeback -c 'write -P 0xab 0 1M' -c flush '$uri'
                       qemu-io -f raw -r -c 'read -P 0xab 0 1M' nbd://127.0.0.1:$port
  Copy an image in:    nbdcopy other.img '$uri'

Inspect the journal:  rewind info $journal
                      rewind log $journal
Mark this moment:     rewind mark $journal before-change$path_note
Press Ctrl-C to stop (the queue is drained and the image checkpointed).
MSG
# Waits until nbdkit exits by itself (an error), or runs the trap on Ctrl-C.
fail_early "$server" "nbdkit (the rewind plugin)"
