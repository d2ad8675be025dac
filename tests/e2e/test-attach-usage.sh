#!/usr/bin/env bash
# scripts/rewind-attach refuses bad arguments with one error line and the documented
# exit status, before it touches any device or starts a server. (Attaching for real
# needs the kernel's nbd module: tests/vm/test-vm-attach.sh does it in a guest.)
source "$(dirname "$0")/functions.sh"
attach=$(cd "$(dirname "$0")/../../scripts" && pwd)/rewind-attach

cd "$workdir"
truncate -s 16M disk.img
# expect STATUS MESSAGE ARGS...
expect() {
  local want=$1 msg=$2 rc=0
  shift 2
  REWIND_RUN_DIR=$workdir/run "$attach" "$@" >out 2>err || rc=$?
  [ "$rc" -eq "$want" ] || fail "rewind-attach $*: exit $rc, expected $want ($(cat err))"
  grep -qF -- "$msg" err || fail "rewind-attach $*: no '$msg' in: $(cat err)"
  [ ! -s out ] || fail "rewind-attach $*: printed on stdout: $(cat out)"
}
expect 2 "rewind-attach IMG [--journal DIR]" --help
expect 2 "unknown option --frobnicate" --frobnicate
expect 2 "--device needs a value" disk.img --device
expect 2 "unexpected argument 'extra'" disk.img extra
expect 2 "--connections many: give a number of connections" disk.img --connections many
expect 2 "--timeout 0: give a number of seconds" disk.img --timeout 0
expect 1 "image nothere.img: not a regular file" nothere.img
expect 1 "disk.img is not attached by rewind-attach (see rewind-attach --list)" --detach disk.img
[ ! -e disk.rewind ] && [ ! -e run ] || fail "a refused command created files"
echo "PASS: rewind-attach refuses bad arguments"
