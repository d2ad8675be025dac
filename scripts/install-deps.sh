#!/usr/bin/env bash
# Installs, with apt-get, whatever rewind needs to build, serve and test that is not
# installed yet (Debian 12, as root). Does nothing when all is present. With --test,
# also what only the test suite needs (clang for the fuzzers, QEMU for the guest
# tests, ...); with --bench, also fio for scripts/bench.sh; with --package, what
# scripts/package.sh needs to build and check the Debian packages.
set -euo pipefail

packages=(
  # build
  cmake g++ make pkg-config
  # libraries
  nbdkit-plugin-dev libnbd-dev libfmt-dev libcli11-dev libxxhash-dev nlohmann-json3-dev
  libboost-dev libssl-dev catch2
  # zstd-compressed record payloads (the plugin's compress=)
  libzstd-dev
  # XChaCha20-Poly1305 for sealed (encrypted) copies shipped with ship-key=
  libsodium-dev
  # S3-compatible object storage: libcurl signs the requests, pugixml reads the answers
  libcurl4-openssl-dev libpugixml-dev
  # pod2man, which makes the man pages (dist/man)
  perl
  # serving and the real clients the tests drive
  nbdkit libnbd-bin qemu-utils fuse3 e2fsprogs util-linux python3 procps
  # the system's trust store, which verifies a log server's certificate without --ca
  ca-certificates
)
if [ "${1:-}" = "--test" ]; then
  # libFuzzer targets (scripts/fuzz.sh); the sanitizer build uses g++'s runtimes
  packages+=(clang libclang-rt-14-dev)
  # the Linux guest tests (tests/vm/): QEMU, and what goes into the guest's initramfs
  packages+=(qemu-system-x86 busybox-static socat kmod cpio nbd-client)
  # the QEMU guest agent, copied into the guest for rewind mark --freeze qga:
  packages+=(qemu-guest-agent)
  # systemd-analyze, to check dist/systemd/rewind@.service; it runs `man` for the
  # unit's Documentation= pages, which a fresh system without man-db fails
  packages+=(systemd man-db)
  # a self-signed certificate for the TLS tests of rewind-server
  packages+=(openssl)
  # the security tests: a user made by the test (useradd), and a network namespace
  # with a non-loopback address (unshare and nsenter from util-linux, ip)
  packages+=(passwd iproute2)
  # a real S3 server for the object-storage tests: a single-node Ceph (monitor, OSD,
  # RADOS Gateway) that tests/support/ceph.sh starts; s3cmd as the reference client
  packages+=(ceph-mon ceph-osd radosgw ceph-common s3cmd)
  # virt-xml-validate, to check dist/libvirt/domain.xml; it runs xmllint, which
  # libvirt-clients only recommends
  packages+=(libvirt-clients libxml2-utils)
  # XXH3-64 in Python, to make a changed record header's checksum good again
  # (tests/e2e/test-ship-key.sh: a tampered sealed copy)
  packages+=(python3-xxhash)
  # the metrics test (tests/e2e/test-metrics.sh): fio's nbd engine as the load, and
  # promtool (Debian's prometheus package) to check both endpoints' text
  packages+=(fio prometheus)
elif [ "${1:-}" = "--package" ]; then
  # scripts/package.sh: dpkg-shlibdeps (the packages' library dependencies) and lintian
  packages+=(dpkg-dev lintian)
elif [ "${1:-}" = "--bench" ]; then
  # the load generator of scripts/bench.sh (its nbd engine), and bc for its arithmetic
  packages+=(fio bc)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this as root (or with sudo)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
