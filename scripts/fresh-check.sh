#!/usr/bin/env bash
# Runs the README's two commands, exactly as written, on a truly fresh Debian 12 root:
# builds one with debootstrap in a temporary directory, installs only git in it, clones
# a commit of this repository, then
#   1. runs `scripts/demo.sh` twice, each time checking with real clients (qemu-io over
#      the UNIX socket, then over TCP) that it serves and keeps what was written, and
#      stopping it with Ctrl-C (SIGINT to its process group, as a terminal sends it):
#      both runs must serve and exit 0, and the journal must verify afterwards;
#   2. runs `scripts/test.sh`, which must exit 0; the failing tests are named if not.
# It reports pass or fail with the time of each step, and always kills what it started
# in the root, unmounts and removes it, even when interrupted.
#
#   scripts/fresh-check.sh [--cache DIR] [--keep] [--mirror URL] [REV]
#
# REV is the commit to check (default HEAD; uncommitted changes are not part of it).
# --cache DIR keeps the downloaded .deb files in DIR for the next run (the root is
# still made and installed anew). --keep leaves the root in place for a look (then
# remove it with `scripts/fresh-check.sh --remove DIR`). The log of each step stays in
# /var/tmp/rewind-fresh.*.log. Needs root, about 10 GiB under
# /var/tmp and Debian's package mirror; takes 30-60 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

cache=""
keep=0
mirror=${FRESH_CHECK_MIRROR:-http://deb.debian.org/debian}
rev=HEAD
usage() {
  sed -n '13p' "$0" | sed 's/^# *//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --cache) [ $# -ge 2 ] || usage; cache=$(realpath -m "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    --mirror) [ $# -ge 2 ] || usage; mirror=$2; shift 2 ;;
    --remove) [ $# -ge 2 ] || usage; remove_only=$(realpath "$2"); shift 2 ;;
    -h | --help) usage ;;
    -*) echo "fresh-check: unknown option $1; see --help" >&2; exit 2 ;;
    *) rev=$1; shift ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-check: debootstrap, chroot and mounts need root; run it as root" >&2
  exit 2
fi

# The root's making and removal (mounts_under, kill_inside, remove_root, prepare_root,
# inside).
source "$here/scripts/fresh-root.sh"
if [ -n "${remove_only:-}" ]; then
  remove_root "$remove_only"
  exit $?
fi

# --- the fresh root ------------------------------------------------------------------
for tool in debootstrap git; do
  command -v "$tool" >/dev/null || {
    echo "fresh-check: installing $tool on this machine"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  }
done
sha=$(git -C "$here" rev-parse --verify "$rev^{commit}") || {
  echo "fresh-check: $rev is not a commit of $here" >&2
  exit 2
}
work=$(mktemp -d /var/tmp/rewind-fresh.XXXXXX)
root=$work/root
log=$work.log  # kept after the root is removed
mkdir -p "$root" "$log"
interrupted=0
# A long step runs as a job of its own and the script waits for it, so that SIGINT or
# SIGTERM to this script acts at once (bash defers a trap until a foreground command
# ends); finish() stops the job's whole process group.
job=""
as_job() {  # LOG CMD...: runs CMD in a process group of its own, output to LOG
  local rc=0 out=$1
  shift
  set -m
  "$@" </dev/null >"$out" 2>&1 &
  job=$!
  set +m
  wait "$job" || rc=$?
  job=""
  return $rc
}
finish() {
  local rc=$?
  trap - EXIT INT TERM
  [ $interrupted = 1 ] && rc=130
  if [ -n "$job" ]; then
    kill -TERM -- -"$job" 2>/dev/null || true
    timeout 30 tail --pid="$job" -f /dev/null || kill -KILL -- -"$job" 2>/dev/null || true
  fi
  if [ $keep = 1 ]; then
    echo "fresh-check: the root is kept in $root; remove it with: $0 --remove $work"
  else
    remove_root "$work" || rc=1
  fi
  exit $rc
}
trap finish EXIT
trap 'interrupted=1; echo "fresh-check: interrupted, cleaning up" >&2; exit 130' INT TERM

start=$SECONDS
step_start=$SECONDS
say() { printf 'fresh-check: [%5ss] %s\n' $((SECONDS - start)) "$*"; }
elapsed() { echo $((SECONDS - step_start)); }
failures=()
fail() {
  failures+=("$1")
  say "FAIL: $1"
}

say "checking ${sha:0:12} ($(git -C "$here" log -1 --format=%s "$sha")) in $root"
# The commit is copied now, not after debootstrap: a commit amended or rebased away in
# the repository meanwhile would no longer be in a clone of it.
git clone -q --bare --no-local "$here" "$work/rewind.git"
git -C "$here" pack-objects -q --revs --stdout <<<"$sha" |
  git -C "$work/rewind.git" unpack-objects -q
git -C "$work/rewind.git" update-ref refs/heads/main "$sha"
git -C "$work/rewind.git" symbolic-ref HEAD refs/heads/main
debootstrap_args=(--arch=amd64)
if [ -n "$cache" ]; then
  mkdir -p "$cache/debootstrap" "$cache/apt"
  debootstrap_args+=(--cache-dir="$cache/debootstrap")
fi
if ! as_job "$log/debootstrap" debootstrap "${debootstrap_args[@]}" bookworm "$root" "$mirror"; then
  tail -5 "$log/debootstrap" >&2
  echo "fresh-check: debootstrap failed (log above); is $mirror reachable?" >&2
  exit 1
fi
t_debootstrap=$(elapsed)
say "debootstrap: ${t_debootstrap}s"

prepare_root "$root" "$mirror" "$cache"

step_start=$SECONDS
if ! as_job "$log/git" inside \
  'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git'; then
  tail -5 "$log/git" >&2
  echo "fresh-check: could not install git in the fresh root" >&2
  exit 1
fi
# The commit, cloned as a user clones: from the bare copy, placed in the root.
mkdir -p "$root/srv"
mv "$work/rewind.git" "$root/srv/rewind.git"
inside 'git clone -q /srv/rewind.git rewind' >"$log/clone" 2>&1 || {
  cat "$log/clone" >&2
  exit 1
}
say "git installed and ${sha:0:12} cloned into /root/rewind: $(elapsed)s"

# --- the first command, twice ----------------------------------------------------------
# Each run is a job of its own (job control on), so that SIGINT reaches its whole
# process group as Ctrl-C in a terminal does, and is not ignored as it would be by a
# plain background job.
sock=/root/rewind/demo/nbd.sock
first_command() {  # RUN (1 or 2)
  local n=$1 out pid rc waited=0 limit=3600
  out=$log/demo-$n
  step_start=$SECONDS
  set -m
  inside 'cd rewind && scripts/demo.sh' </dev/null >"$out" 2>&1 &
  pid=$!
  set +m
  until grep -q '^rewind is serving' "$out"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" || rc=$?
      fail "first command, run $n: exited with status $rc before serving"
      tail -15 "$out" | sed 's/^/    | /'
      return
    fi
    if [ $waited -ge $limit ]; then
      fail "first command, run $n: not serving after ${limit}s"
      kill -INT -- -"$pid" 2>/dev/null || true
      wait "$pid" || true
      return
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "first command, run $n: serving after $(elapsed)s"
  t_serving[$n]=$(elapsed)
  # A real client writes through the socket (run 1) and reads back over TCP: the data
  # written in the first run must still be there in the second.
  if [ "$n" = 1 ]; then
    inside "qemu-io -f raw -t writeback -c 'write -P 0x5a 1M 3M' -c flush 'nbd+unix:///?socket=$sock'" \
      >>"$log/clients" 2>&1 || fail "first command, run $n: qemu-io could not write through $sock"
  fi
  inside "qemu-io -f raw -r -c 'read -P 0x5a 1M 3M' -c 'read -P 0 0 1M' nbd://127.0.0.1:10809" \
    >>"$log/clients" 2>&1 ||
    fail "first command, run $n: the data written in run 1 did not read back over TCP ($log/clients)"
  # Ctrl-C.
  kill -INT -- -"$pid" 2>/dev/null || true
  rc=0
  if ! timeout 120 tail --pid="$pid" -f /dev/null; then
    fail "first command, run $n: still running 120 s after Ctrl-C"
    kill -KILL -- -"$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || fail "first command, run $n: exited with status $rc after Ctrl-C"
  grep -q '^demo: stopped' "$out" ||
    fail "first command, run $n: printed no line saying what was drained and checkpointed"
  say "first command, run $n: stopped with Ctrl-C, status $rc; it said: $(grep '^demo: stopped' "$out" | head -1)"
}
declare -A t_serving=()
first_command 1
first_command 2
# (the tool is build/cli/rewind, or build/replay/rewind in older commits)
inside 'cd rewind && $(ls build/cli/rewind build/replay/rewind 2>/dev/null | head -1) verify demo/disk.rewind --image demo/disk.img' \
  >"$log/verify" 2>&1 || fail "the demo's journal does not verify against its image: $(tail -1 "$log/verify")"

# --- the second command ----------------------------------------------------------------
step_start=$SECONDS
rc=0
as_job "$log/test" inside 'cd rewind && scripts/test.sh' || rc=$?
t_test=$(elapsed)
summary=$(grep -E '^[0-9]+% tests passed' "$log/test" | tail -2 | tr '\n' ' ')
say "second command: status $rc after ${t_test}s; $summary"
if [ "$rc" != 0 ]; then
  failed=$(sed -n '/The following tests FAILED:/,/^Errors while running/p' "$log/test" |
    grep -E '^\s+[0-9]+ - ' || true)
  if [ -n "$failed" ]; then
    fail "second command: failed tests: $(echo "$failed" | sed -E 's/^\s*[0-9]+ - //; s/ \([^)]*\)$//' |
      paste -sd, | sed 's/,/, /g')"
  else
    fail "second command: exited with status $rc; its last lines:"
  fi
  tail -25 "$log/test" | sed 's/^/    | /'
fi

echo
echo "fresh-check: ${sha:0:12}: debootstrap ${t_debootstrap}s, first command to serving" \
  "${t_serving[1]:-?}s then ${t_serving[2]:-?}s, second command ${t_test}s, total $((SECONDS - start))s"
echo "fresh-check: logs of every step are in $log"
if [ ${#failures[@]} -eq 0 ]; then
  echo "fresh-check: PASS"
  exit 0
fi
echo "fresh-check: FAIL (${#failures[@]}):"
printf '  %s\n' "${failures[@]}"
exit 1
