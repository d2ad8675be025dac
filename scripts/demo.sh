#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and serves a journaled
# disk on a UNIX socket and on 127.0.0.1:10809 until Ctrl-C.
#   scripts/demo.sh [IMAGE]     IMAGE defaults to demo/disk.img (1 GiB, sparse, created)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh
scripts/build.sh

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
plugin=$root/build/nbdkit-plugin/nbdkit-rewind-plugin.so
port=10809

nbdkit -f -U "$sock" "$plugin" image="$image" journal="$journal" &
server=$!
# TCP clients reach the same server through nbdkit's nbd plugin (one process owns
# the journal; the forwarder passes FLUSH and FUA through).
for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "demo: the server did not start" >&2; exit 1; }
nbdkit -f -i 127.0.0.1 -p "$port" nbd socket="$sock" &
forwarder=$!
trap 'kill -TERM $forwarder $server 2>/dev/null; wait $forwarder $server 2>/dev/null' EXIT INT TERM

cat <<MSG

rewind is serving $image
  journal:     $journal
  UNIX socket: nbd+unix:///?socket=$sock
  TCP:         nbd://127.0.0.1:$port

Attach it:
  Linux block device:  nbd-client -unix $sock /dev/nbd0 -b 4096 -C 4 -t 60 -N ""
                       (or over TCP: nbd-client 127.0.0.1 $port /dev/nbd0 -N "")
  QEMU virtual disk:   qemu-system-x86_64 ... -drive file=nbd://127.0.0.1:$port,format=raw,cache=writeback,discard=unmap
  FUSE file + loop:    mkdir -p /mnt/rw && nbdfuse /mnt/rw/disk --unix $sock &
                       losetup -f --show /mnt/rw/disk
  Copy an image in:    nbdcopy other.img 'nbd+unix:///?socket=$sock'

Inspect the journal:  build/replay/rewind info $journal
                      build/replay/rewind log $journal
Press Ctrl-C to stop (the queue is drained and the image checkpointed).
MSG
wait $server
