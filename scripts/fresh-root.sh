# shellcheck shell=bash
# Shared by scripts/fresh-check.sh and scripts/package-check.sh (sourced, never run):
# a fresh Debian 12 root made with debootstrap, commands run in it as root would run
# them, and its removal.

# Every process whose root directory is inside the fresh root is killed, then every
# mount under it is unmounted, deepest first; the tree is removed only when nothing is
# mounted under it any more, so that a bind mount of /dev is never deleted through.
mounts_under() {  # DIR: mount points under DIR, deepest first
  awk -v d="$1" '{ gsub(/\\040/, " ", $5); if (index($5, d "/") == 1 || $5 == d) print $5 }' \
    /proc/self/mountinfo | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}
kill_inside() {  # DIR: kills the processes chrooted into DIR
  local sig pid link any
  for sig in TERM KILL; do
    any=0
    for link in /proc/[0-9]*/root; do
      pid=${link#/proc/}
      pid=${pid%/root}
      [ "$pid" = $$ ] && continue
      case $(readlink "$link" 2>/dev/null) in
        "$1" | "$1"/*) kill -"$sig" "$pid" 2>/dev/null && any=1 ;;
      esac
    done
    [ $any = 1 ] || return 0
    sleep 2
  done
}
remove_root() {  # WORKDIR
  local work=$1 root=$1/root m
  [ -d "$work" ] || return 0
  kill_inside "$root"
  # Loop devices of files inside the root (left by an interrupted test).
  losetup -a 2>/dev/null | while IFS=: read -r dev _ file; do
    case $file in *"$root"*) losetup -d "$dev" 2>/dev/null || true ;; esac
  done
  for m in $(mounts_under "$root"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ -n "$(mounts_under "$root")" ]; then
    echo "${0##*/}: still mounted under $root, not removed: $(mounts_under "$root" | tr '\n' ' ')" >&2
    return 1
  fi
  rm -rf --one-file-system "$work"
}
# prepare_root ROOT MIRROR [CACHE]: what a fresh installation has besides debootstrap's
# root: the updates and security suites, a name server, /proc, /sys, /dev, /run as
# tmpfs; no service starts inside the chroot. With CACHE, apt's downloads go to
# CACHE/apt.
prepare_root() {
  local root=$1 mirror=$2 cache=${3:-}
  [ -n "$root" ] && [ "$root" != / ] || return 1
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  mount --bind /sys "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  mount -t tmpfs -o mode=755 run "$root/run"
  if [ -n "$cache" ]; then
    mount --bind "$cache/apt" "$root/var/cache/apt/archives"
  fi
}

# SIGINT is set back to its default: this script may have been started with it ignored
# (as a background job of a non-interactive shell is), and a shell that starts with
# SIGINT ignored cannot trap it, so the demo's Ctrl-C handler would not run.
inside() {  # CMD...: runs CMD in $root as root would in a login shell of the fresh system
  env --default-signal=INT -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 USER=root LOGNAME=root SHELL=/bin/bash \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    chroot "$root" /bin/bash -c "cd /root && $*"
}
