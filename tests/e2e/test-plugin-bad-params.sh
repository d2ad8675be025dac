#!/usr/bin/env bash
# Bad parameters and mismatched files: one clear error line, a failing exit status,
# and nothing created or changed.
source "$(dirname "$0")/functions.sh"
requires nbdkit sha256sum

cd "$workdir"
truncate -s 16M disk.img
truncate -s 16M other.img
truncate -s 1000 odd.img
mkdir notajournal && echo hello > notajournal/notes.txt

# expect_error MESSAGE KEY=VALUE...: nbdkit must fail, print MESSAGE, change nothing.
expect_error() {
  local msg=$1
  shift
  local before after rc=0
  before=$(find . -path ./server.log -prune -o -print0 | sort -z | xargs -0 sha256sum 2>/dev/null; find . | sort)
  nbdkit -U - "$REWIND_PLUGIN" "$@" --run true >out.log 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "nbdkit accepted: $*"
  grep -qF -- "$msg" out.log || { cat out.log; fail "no '$msg' for: $*"; }
  rm -f out.log
  after=$(find . -path ./server.log -prune -o -print0 | sort -z | xargs -0 sha256sum 2>/dev/null; find . | sort)
  [ "$before" = "$after" ] || fail "files changed by: $*"
}

expect_error "missing parameter: image=" journal=j
expect_error "missing parameter: journal=" image=disk.img
expect_error "unknown parameter 'colour'" image=disk.img journal=j colour=blue
expect_error "nothere.img" image=nothere.img journal=j
expect_error "flush-interval=soon: 'soon' is not a duration" image=disk.img journal=j flush-interval=soon
expect_error "'100' is not a duration" image=disk.img journal=j flush-interval=100
expect_error "queue-max=1K: must be between" image=disk.img journal=j queue-max=1K
expect_error "coalesce=yes: must be on or off" image=disk.img journal=j coalesce=yes
expect_error "compress=lz4: must be off, zstd or zstd:LEVEL with LEVEL 1 to 19" image=disk.img \
  journal=j compress=lz4
expect_error "compress=zstd:22: must be off, zstd or zstd:LEVEL" image=disk.img journal=j \
  compress=zstd:22
expect_error "compress-threads=0: must be a whole number between 1 and 64" image=disk.img \
  journal=j compress=zstd compress-threads=0
expect_error "compress-threads=2x: must be a whole number between 1 and 64" image=disk.img \
  journal=j compress=zstd compress-threads=2x
expect_error "image-reads=maybe: must be on or off" journal=j seq=1 image-reads=maybe
expect_error "image-reads= applies to a point-in-time view only" image=disk.img journal=j \
  image-reads=off
expect_error "retain=5: '5' is not a duration" image=disk.img journal=j retain=5
expect_error "journal-max=3.0 MiB is less than twice segment-size=2.0 MiB" image=disk.img journal=j \
  segment-size=2M journal-max=3M
expect_error "retain-coarse=1d: tier '1d' has no ':'" image=disk.img journal=j retain-coarse=1d
expect_error "tier '1d:1m' must be older and coarser" image=disk.img journal=j \
  retain-coarse=30d:1h,1d:1m
expect_error "ship=logs: give the log server as HOST:PORT" image=disk.img journal=j ship=logs
expect_error "ship=logs:99999: give the log server as HOST:PORT" image=disk.img journal=j \
  ship=logs:99999
expect_error "ship= needs ship-token=TOKEN" image=disk.img journal=j ship=logs:7420 ship-volume=v
expect_error "ship= needs ship-volume=NAME" image=disk.img journal=j ship=logs:7420 ship-token=t
expect_error "ship-volume=../v: " image=disk.img journal=j ship=logs:7420 ship-token=t \
  ship-volume=../v
expect_error "ship-token=: a token is printable ASCII without spaces" image=disk.img journal=j \
  ship=logs:7420 ship-token="a b" ship-volume=v
expect_error "ship-token=@nothere: " image=disk.img journal=j ship=logs:7420 ship-token=@nothere \
  ship-volume=v
expect_error "ship-token= without ship=HOST:PORT" image=disk.img journal=j ship-token=t
expect_error "ship-compress=lz4: must be off, zstd or zstd:LEVEL" image=disk.img journal=j \
  ship=logs:7420 ship-token=t ship-volume=v ship-compress=lz4
expect_error "ship-compress= without ship=HOST:PORT" image=disk.img journal=j ship-compress=off
expect_error "ship-compress= is for a log server, or a bucket with ship-key=" \
  image=disk.img journal=j ship=s3://vols/p ship-compress=zstd
expect_error "ship-key=k.key: give the key file as @FILE" image=disk.img journal=j \
  ship=logs:7420 ship-token=t ship-volume=v ship-key=k.key
"$REWIND_CLI" keygen k.key >/dev/null
chmod 640 k.key
expect_error "ship-key=@k.key: key file $workdir/k.key: its group or others may read it" \
  image=disk.img journal=j ship=logs:7420 ship-token=t ship-volume=v ship-key=@k.key
chmod 600 k.key
expect_error "ship-key= without ship=HOST:PORT" image=disk.img journal=j ship-key=@k.key
expect_error "ship-key= with ship=s3://vols: s3://vols has no prefix" image=disk.img journal=j \
  ship=s3://vols ship-key=@k.key
expect_error "the prefix's last part '.v' names the volume: volume name '.v' must be" \
  image=disk.img journal=j ship=s3://vols/p/.v ship-key=@k.key
expect_error "key=k.key: give the key file as @FILE" journal=j mark=m key=k.key
expect_error "key= opens a sealed copy in a point-in-time view" image=disk.img journal=j \
  key=@k.key
expect_error "ship-rate=1: must be between" image=disk.img journal=j ship=logs:7420 ship-token=t \
  ship-volume=v ship-rate=1
expect_error "retain 2d00h is not shorter than the first retain-coarse tier's age (1d00h)" image=disk.img \
  journal=j retain=2d retain-coarse=1d:1m
expect_error "segment-size=big: 'big' is not a size" image=disk.img journal=j segment-size=big
expect_error "segment-age=0s: must be between" image=disk.img journal=j segment-age=0s
expect_error "image= and a point in time (at=/seq=/mark=) exclude each other" image=disk.img journal=j at=now
expect_error "'yesterday' is not a time" journal=j at=yesterday
expect_error "give only one of" journal=j seq=1 mark=x
expect_error "is longer than 107 bytes, the limit for a UNIX socket" image=disk.img journal=j control=$workdir/$(printf 'x%.0s' $(seq 1 120))
expect_error "not a rewind journal" image=disk.img journal=notajournal
expect_error "not a non-zero multiple of 512" image=odd.img journal=j2
# A journal that belongs to another image.
nbdkit -U - "$REWIND_PLUGIN" image=disk.img journal=disk.rewind --run true
expect_error "was created for image" image=other.img journal=disk.rewind
# Another server already serves the journal.
start_server "$workdir/nbd.sock" image=disk.img journal=disk.rewind
expect_error "is in use by another rewind process" image=disk.img journal=disk.rewind
stop_server
# A journal so deep that its default control socket cannot exist still serves.
deep=$workdir/$(printf 'd%.0s' $(seq 1 60))/$(printf 'e%.0s' $(seq 1 60))
mkdir -p "$deep"
nbdkit -U - "$REWIND_PLUGIN" image=disk.img journal="$deep/j" --run 'nbdinfo --size $uri' >deep.log 2>&1 ||
  { cat deep.log; fail "a deep journal path stopped the server"; }
grep -q "this volume takes no marks; give control=PATH" deep.log || fail "no warning about the control socket"
rm -rf "$workdir/dddd"* deep.log
echo "PASS: bad parameters"
