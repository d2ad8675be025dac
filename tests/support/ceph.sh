#!/usr/bin/env bash
# A throwaway single-node Ceph for the tests that need a real S3 server: one monitor,
# one OSD on memstore (the data lives in its RAM) and radosgw, all inside DIR and on
# 127.0.0.1 only. Nothing is written to /etc/ceph, /var/lib/ceph or /var/log/ceph.
#
#   tests/support/ceph.sh start DIR   # ready in 15-60 s; writes DIR/env
#   . DIR/env                         # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
#   tests/support/ceph.sh stop DIR    # stops only the daemons it started
#   tests/support/ceph.sh stop-rgw DIR / start-rgw DIR   # radosgw alone (fault tests)
#
# Ports: a block of 16 in 31000-31999 that nothing listens on, chosen from a hash of
# DIR. DIR must be short: the daemons' admin sockets live in it (107 bytes at most).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ ! $cmd =~ ^(start|stop|start-rgw|stop-rgw)$ || -z $dir ]]; then
  echo "usage: $0 start|stop|start-rgw|stop-rgw DIR" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf

die() {
  echo "ceph.sh: $*" >&2
  exit 1
}

# wait_for SECONDS WHAT CMD...: runs CMD until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local i
  for ((i = 0; i < seconds * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "no $what after ${seconds}s; the daemons' logs are in $dir/log"
}

# spawn NAME CMD...: a daemon in the foreground (-f), in its own session; its PID and
# NAME go to DIR/pids.
spawn() {
  local name=$1
  shift
  setsid "$@" -f >"$dir/log/$name.out" 2>&1 </dev/null &
  echo "$! $name" >>"$dir/pids"
}

# The PIDs recorded for NAME that still run with our configuration (never a PID the
# system gave to another process since).
ours() {
  local name=$1 pid _n
  [[ -f $dir/pids ]] || return 0
  while read -r pid _n; do
    [[ $_n == "$name" ]] || continue
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-c $conf " && echo "$pid"
  done <"$dir/pids"
}

# reap NAME...: SIGTERM, up to 10 s, then SIGKILL.
reap() {
  local pids=() name pid i
  for name in "$@"; do
    for pid in $(ours "$name"); do pids+=("$pid"); done
  done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do
      local state
      state=$(awk '/^State/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [[ -n $state && $state != Z ]] && alive=1
    done
    ((alive)) || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

rgw_port() { sed -n 's/^rgw_frontends = beast endpoint=127.0.0.1:\([0-9]*\)$/\1/p' "$conf"; }

start_rgw() {
  spawn radosgw radosgw -c "$conf" -n client.rgw.x
  local port
  port=$(rgw_port)
  wait_for 180 "S3 answer from radosgw on port $port" \
    python3 -c "import sys, urllib.request
sys.exit(b'ListAllMyBucketsResult' not in urllib.request.urlopen('http://127.0.0.1:$port/', timeout=2).read())"
}

case $cmd in
  stop)
    # radosgw before the OSD: it hangs in its shutdown without one.
    reap radosgw
    reap ceph-osd
    reap ceph-mon
    rm -f "$dir/pids"
    exit 0
    ;;
  stop-rgw)
    reap radosgw
    exit 0
    ;;
  start-rgw)
    [[ -f $conf ]] || die "$dir holds no cluster; start it first"
    [[ -z $(ours radosgw) ]] || die "radosgw already runs"
    start_rgw
    exit 0
    ;;
esac

[[ ! -e $dir/pids ]] || die "$dir/pids exists: a cluster runs there; stop it first"
for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh --test"
done
((${#dir} <= 60)) || die "$dir is too long for the admin sockets; use a shorter directory"
trap 'rc=$?; if ((rc != 0)); then echo "ceph.sh: start failed; logs in $dir/log" >&2; "$0" stop "$dir"; fi' EXIT

rm -rf "$dir"/{mon,osd,rgw,run,log,crash}
mkdir -p "$dir"/{mon/ceph-a,osd/ceph-0,rgw,run,log,crash}

# A 16-port block no socket uses yet: the monitor's two, radosgw's, and the OSD's range.
used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
hash=$(echo -n "$dir" | cksum | cut -d' ' -f1)
base=
for ((k = 0; k < 62; k++)); do
  b=$((31000 + ((hash + k) % 62) * 16))
  clash=0
  for ((p = b; p < b + 16; p++)); do
    if grep -qx "$p" <<<"$used"; then
      clash=1
      break
    fi
  done
  if ((!clash)); then
    base=$b
    break
  fi
done
[[ -n $base ]] || die "no free block of 16 ports in 31000-31999"
mon="[v2:127.0.0.1:$base,v1:127.0.0.1:$((base + 1))]"

fsid=$(cat /proc/sys/kernel/random/uuid)
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = $mon
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv4 = true
ms_bind_ipv6 = false
ms_bind_port_min = $((base + 3))
ms_bind_port_max = $((base + 15))
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
keyring = $dir/keyring
run_dir = $dir/run
crash_dir = $dir/crash
log_file = $dir/log/\$name.log
mon_cluster_log_file = default=$dir/log/\$channel.log cluster=$dir/log/cluster.log
admin_socket = $dir/run/\$name.\$pid.asok
mon_data = $dir/mon/\$cluster-\$id
osd_data = $dir/osd/\$cluster-\$id
rgw_data = $dir/rgw
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 2
mon_mgr_mkfs_grace = 86400
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
[osd]
osd_objectstore = memstore
memstore_device_bytes = 6442450944
[client.rgw.x]
rgw_frontends = beast endpoint=127.0.0.1:$((base + 2))
rgw_thread_pool_size = 32
ms_mon_client_mode = secure crc
EOF

keyring=$dir/keyring
rm -f "$keyring"
key() { ceph-authtool "$keyring" "$@" >/dev/null; }
key --create-keyring --gen-key -n mon. --cap mon 'allow *'
key --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
key --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
key --gen-key -n client.rgw.x --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
chmod 600 "$keyring"

monmaptool --create --clobber --fsid "$fsid" --addv a "$mon" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$keyring" >"$dir/log/mon-mkfs.out" 2>&1
spawn ceph-mon ceph-mon -c "$conf" -i a
wait_for 120 "monitor" ceph -c "$conf" --connect-timeout 2 mon stat

osd_uuid=$(cat /proc/sys/kernel/random/uuid)
secret=$(ceph-authtool -p -n osd.0 "$keyring")
id=$(ceph -c "$conf" osd new "$osd_uuid" -i - <<<"{\"cephx_secret\": \"$secret\"}")
[[ $id == 0 ]] || die "the new OSD got id '$id', not 0"
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1
spawn ceph-osd ceph-osd -c "$conf" -i 0
wait_for 120 "OSD up" bash -c "ceph -c '$conf' osd dump | grep -q '^osd.0 up'"

start_rgw
access=RW$(openssl rand -hex 9 | tr a-f A-F)
secret=$(openssl rand -hex 20)
radosgw-admin -c "$conf" -n client.admin user create --uid=rewind --display-name=rewind \
  --access-key="$access" --secret-key="$secret" >"$dir/log/user-create.out"

cat >"$dir/env" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$((base + 2))
export AWS_ACCESS_KEY_ID=$access
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=default
export CEPH_CONF=$conf
EOF
chmod 600 "$dir/env"
