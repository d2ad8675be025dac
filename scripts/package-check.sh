#!/usr/bin/env bash
# Installs rewind's Debian packages into a fresh Debian 12 root (made with debootstrap)
# and uses them as an administrator would, then removes them:
#   1. installs what the packages depend on from Debian, and what this check uses
#      besides (man-db, openssl for a certificate, libnbd-bin's nbdcopy as a client),
#      then records every path of the root;
#   2. installs the packages (apt-get install ./rewind_*.deb ./rewind-server_*.deb);
#   3. serves a volume with `nbdkit rewind ...` by the plugin's short name, writes to it
#      with nbdcopy and takes a mark with `rewind mark`;
#   4. starts rewind-server with its unit file's command line (ExecStart= with the
#      unit's Environment= and an /etc/rewind/server.conf, as the unit's user), serves
#      the volume again shipping to it, and reads the mark back from the server;
#   5. reads `man nbdkit-rewind-plugin`, `man rewind`, `man rewind-server` and
#      `man rewind-attach`;
#   6. purges both packages: no path of the root may be new since step 1 but the
#      volume, the server's configuration and store (the user's data), and the users'
#      account files (Debian's packages keep the system users they made: the data they
#      own stays theirs); and no path may be gone.
# It prints the time of each step and pass or fail, and removes the root, even when
# interrupted.
#
#   scripts/package-check.sh [--cache DIR] [--keep] [DEB...]
#
# Without DEBs, scripts/package.sh builds them first. --cache DIR keeps the downloaded
# .deb files of Debian's packages for the next run; --keep leaves the root in place
# (remove it with `scripts/fresh-check.sh --remove DIR`). Needs root, about 2 GiB under
# /var/tmp and Debian's package mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

cache=""
keep=0
mirror=${FRESH_CHECK_MIRROR:-http://deb.debian.org/debian}
debs=()
usage() {
  grep -m1 '^#   scripts/package-check.sh' "$0" | sed 's/^# *//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --cache) [ $# -ge 2 ] || usage; cache=$(realpath -m "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    -*) echo "package-check: unknown option $1; see --help" >&2; exit 2 ;;
    *) debs+=("$(realpath "$1")"); shift ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "package-check: debootstrap, chroot and mounts need root; run it as root" >&2
  exit 2
fi
source "$here/scripts/fresh-root.sh"

start=$SECONDS
step_start=$SECONDS
say() { printf 'package-check: [%5ss] %s\n' $((SECONDS - start)) "$*"; }
elapsed() { echo $((SECONDS - step_start)); }
fail() {
  say "FAIL: $*"
  exit 1
}

if [ ${#debs[@]} -eq 0 ]; then
  mapfile -t debs < <("$here/scripts/package.sh" | grep '\.deb$')
  say "built ${debs[*]##*/}: $(elapsed)s"
fi
for d in "${debs[@]}"; do
  dpkg-deb -f "$d" Package >/dev/null || fail "$d is not a Debian package"
done

command -v debootstrap >/dev/null || {
  echo "package-check: installing debootstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d /var/tmp/rewind-package.XXXXXX)
root=$work/root
log=$work.log  # kept after the root is removed
mkdir -p "$root" "$log"
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [ $keep = 1 ]; then
    echo "package-check: the root is kept in $root; remove it with: scripts/fresh-check.sh --remove $work"
  else
    remove_root "$work" || rc=1
  fi
  echo "package-check: logs are in $log"
  exit $rc
}
trap finish EXIT
trap 'echo "package-check: interrupted, cleaning up" >&2; exit 130' INT TERM

step_start=$SECONDS
debootstrap_args=(--arch=amd64)
if [ -n "$cache" ]; then
  mkdir -p "$cache/debootstrap" "$cache/apt"
  debootstrap_args+=(--cache-dir="$cache/debootstrap")
fi
debootstrap "${debootstrap_args[@]}" bookworm "$root" "$mirror" >"$log/debootstrap" 2>&1 ||
  fail "debootstrap failed ($log/debootstrap); is $mirror reachable?"
prepare_root "$root" "$mirror" "$cache"
say "debootstrap: $(elapsed)s"

# 1. The dependencies (the first of any alternatives), and the check's own tools.
step_start=$SECONDS
mkdir "$root/root/debs"
cp "${debs[@]}" "$root/root/debs/"
deps=$(for d in "${debs[@]}"; do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
  sed 's/|.*//; s/(.*)//; s/ //g' | grep -v '^$' | sort -u | tr '\n' ' ')
inside "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends $deps systemd man-db openssl libnbd-bin" >"$log/deps" 2>&1 ||
  fail "installing the dependencies ($deps) failed: $(tail -3 "$log/deps")"
# Every path but those of the running system and of apt's and dpkg's own bookkeeping.
paths() {
  inside 'find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg \
    -o -path /var/lib/systemd \) -prune -o -print' | sort
}
paths >"$log/paths-before"
say "dependencies installed ($deps): $(elapsed)s"

# 2. The packages.
step_start=$SECONDS
inside "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  $(printf '/root/debs/%s ' "${debs[@]##*/}")" >"$log/install" 2>&1 ||
  fail "apt-get install of the packages failed: $(tail -3 "$log/install")"
inside 'dpkg -s rewind rewind-server' >/dev/null || fail "the packages are not installed"
inside 'getent passwd rewind rewind-server' >/dev/null ||
  fail "the packages did not make the users rewind and rewind-server"
say "packages installed: $(elapsed)s"

# 3. A volume served by the plugin's short name, written to, and marked.
step_start=$SECONDS
serve() {  # KEY=VALUE...: nbdkit rewind on /root/data/nbd.sock, in the background
  inside "rm -f /root/data/nbd.sock && nbdkit -P /root/data/nbdkit.pid -U /root/data/nbd.sock \
    rewind image=/root/data/disk.img journal=/root/data/disk.rewind $*" >>"$log/nbdkit" 2>&1 ||
    fail "nbdkit rewind did not start: $(tail -3 "$log/nbdkit")"
  local _
  for _ in $(seq 1 100); do
    inside "nbdinfo --size 'nbd+unix:///?socket=/root/data/nbd.sock'" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "nbdkit rewind does not answer on /root/data/nbd.sock: $(tail -3 "$log/nbdkit")"
}
stop_serving() {
  inside 'pid=$(cat /root/data/nbdkit.pid) && kill -TERM "$pid" && for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' ||
    fail "nbdkit did not stop: $(tail -3 "$log/nbdkit")"
}
inside 'mkdir -m 700 /root/data && truncate -s 64M /root/data/disk.img &&
  head -c 4M /dev/urandom >/root/data/written' || fail "could not make the image"
serve
inside "nbdcopy /root/data/written 'nbd+unix:///?socket=/root/data/nbd.sock'" >>"$log/client" 2>&1 ||
  fail "nbdcopy could not write to the volume: $(tail -3 "$log/client")"
inside 'rewind mark /root/data/disk.rewind installed && rewind log /root/data/disk.rewind' \
  >"$log/rewind" 2>&1 || fail "rewind mark failed: $(tail -3 "$log/rewind")"
grep -q 'installed' "$log/rewind" || fail "rewind log does not list the mark: $(cat "$log/rewind")"
say "nbdkit rewind served, nbdcopy wrote 4 MiB, rewind mark: $(elapsed)s"

# 4. rewind-server as its unit starts it, and the volume shipped to it.
step_start=$SECONDS
unit=$(inside 'ls /lib/systemd/system/rewind-server.service /usr/lib/systemd/system/rewind-server.service 2>/dev/null' | head -1)
[ -n "$unit" ] || fail "no rewind-server.service installed"
inside "mkdir -p /etc/rewind && cd /etc/rewind &&
  openssl req -x509 -newkey rsa:2048 -nodes -keyout server-key.pem -out server-cert.pem -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null &&
  echo 'tok-package-check vol1' >server-tokens &&
  chown rewind-server server-key.pem server-tokens && chmod 600 server-key.pem server-tokens &&
  echo LISTEN=127.0.0.1:7420 >server.conf && chmod 600 server.conf &&
  install -d -o rewind-server -g rewind-server -m 700 /var/lib/rewind-server" ||
  fail "could not configure rewind-server"
# What systemd would run: Environment=, then EnvironmentFile=, then ExecStart= as User=.
inside "set -a && $(sed -n 's/^Environment=//p' "$root$unit") && . /etc/rewind/server.conf && set +a &&
  user=\$(sed -n 's/^User=//p' $unit) &&
  setsid runuser -u \"\$user\" -- sh -c 'exec $(sed -n 's/^ExecStart=//p' "$root$unit")' \
    </dev/null >/root/server.log 2>&1 &" || fail "could not start rewind-server"
for _ in $(seq 1 100); do
  grep -q 'listening on' "$root/root/server.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'listening on 127.0.0.1:7420 (TLS)' "$root/root/server.log" ||
  fail "rewind-server did not start from its unit's command line: $(cat "$root/root/server.log")"
stop_serving
inside 'echo tok-package-check >/root/data/token && chmod 600 /root/data/token'
serve ship=localhost:7420 ship-token=@/root/data/token ship-volume=vol1 \
  ship-ca=/etc/rewind/server-cert.pem
shipped=0
for _ in $(seq 1 100); do
  if inside 'REWIND_TOKEN=tok-package-check rewind log rewind://localhost:7420/vol1 \
    --ca /etc/rewind/server-cert.pem' >"$log/remote" 2>&1 && grep -q installed "$log/remote"; then
    shipped=1
    break
  fi
  sleep 0.2
done
[ $shipped = 1 ] || fail "the mark did not reach rewind-server: $(tail -3 "$log/remote")"
say "rewind-server started from $unit, the volume shipped and its mark read back: $(elapsed)s"

# 5. The man pages.
step_start=$SECONDS
for page in "nbdkit-rewind-plugin:journal=" "rewind:bisect" "rewind-server:--tokens" \
  "rewind-attach:--detach"; do
  inside "MANPAGER=cat MANWIDTH=100 man ${page%%:*}" >"$log/man-${page%%:*}" 2>&1 ||
    fail "man ${page%%:*} failed: $(tail -3 "$log/man-${page%%:*}")"
  grep -q -- "${page#*:}" "$log/man-${page%%:*}" || fail "man ${page%%:*} does not mention ${page#*:}"
done
say "man nbdkit-rewind-plugin, rewind, rewind-server, rewind-attach: $(elapsed)s"

# 6. Removal.
step_start=$SECONDS
stop_serving
inside 'pkill -TERM -x rewind-server; for _ in $(seq 1 100); do pgrep -x rewind-server >/dev/null || exit 0; sleep 0.1; done; exit 1' ||
  fail "rewind-server did not stop"
inside 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq rewind rewind-server' >"$log/purge" 2>&1 ||
  fail "apt-get purge failed: $(tail -3 "$log/purge")"
inside 'dpkg -l rewind rewind-server 2>/dev/null | grep -q "^[ip]"' && fail "the packages are still installed"
paths >"$log/paths-after"
left=$(comm -13 "$log/paths-before" "$log/paths-after" |
  grep -vE '^/root/(data|debs|server\.log)(/|$)|^/etc/rewind(/|$)|^/var/lib/rewind-server(/|$)|^/etc/(passwd|group|shadow|gshadow)-$' || true)
gone=$(comm -23 "$log/paths-before" "$log/paths-after" || true)
[ -z "$left" ] || fail "left behind after the purge: $(echo "$left" | head -20 | tr '\n' ' ')"
[ -z "$gone" ] || fail "removed by the purge though not the packages': $(echo "$gone" | head -20 | tr '\n' ' ')"
[ -d "$root/root/data/disk.rewind" ] && [ -d "$root/var/lib/rewind-server/store/vol1" ] ||
  fail "the purge removed the user's data"
say "purged: nothing left but /root/data, /etc/rewind, /var/lib/rewind-server and the users: $(elapsed)s"

echo "package-check: PASS in $((SECONDS - start))s"
