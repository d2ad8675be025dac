#!/usr/bin/env bash
# Builds the test guest in OUTDIR: Debian's packaged kernel (vmlinuz) and a small
# initramfs (initrd.img) holding busybox, the tools the scenarios use, the modules
# they need and tests/vm/guest/. Nothing comes from anywhere but Debian's packages:
# the kernel package is fetched with `apt-get download` and unpacked, never installed.
# The kernel is kept between runs; the initramfs is made anew each time (a second).
# Also decides once how QEMU runs here (OUTDIR/accel: "kvm" or "tcg").
# With REWIND_PLUGIN set (CTest sets it), the guest also gets nbdkit, that plugin and
# scripts/rewind-attach, in /rewind; with REWIND_PRELOAD (a sanitizer build) the
# runtime the plugin needs, listed in /rewind/preload.
#   tests/vm/build-guest.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-guest.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

fail() {
  echo "build-guest: $*" >&2
  exit 1
}
for tool in qemu-system-x86_64 busybox nbd-client socat mke2fs cpio depmod modprobe apt-get; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (run scripts/install-deps.sh --test)"
done
# The guest has no libraries for busybox: it must be the static one.
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  fail "/bin/busybox is not the static busybox (install busybox-static)"
fi

# --- the kernel: the package linux-image-amd64 points at ---------------------------
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || fail "apt-cache knows no linux-image-amd64; run apt-get update"
kver=${pkg#linux-image-}
kroot=$out/kernel-$kver
if [ ! -f "$kroot/boot/vmlinuz-$kver" ]; then
  rm -rf "$out"/kernel-* "$out"/*.deb
  (cd "$out" && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1) ||
    (apt-get update -qq && cd "$out" && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
    fail "cannot download $pkg from Debian's archive"
  mkdir -p "$kroot.tmp"
  dpkg -x "$out/${pkg}"_*.deb "$kroot.tmp"
  depmod -b "$kroot.tmp" "$kver"
  rm -f "$out/${pkg}"_*.deb
  mv "$kroot.tmp" "$kroot"
fi
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"

# --- the initramfs -------------------------------------------------------------------
root=$out/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,mnt,lib/modules,scenarios}
cp /bin/busybox "$root/bin/busybox"

# Dynamic tools with the libraries ldd lists.
copy_with_libs() {
  local bin=$1 dest=$2 lib
  mkdir -p "$(dirname "$root/$dest")"
  cp "$bin" "$root/$dest"
  for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$(command -v nbd-client)" sbin/nbd-client
copy_with_libs "$(command -v socat)" bin/socat
copy_with_libs "$(command -v mke2fs)" sbin/mkfs.ext4
copy_with_libs /usr/sbin/qemu-ga usr/sbin/qemu-ga
cp /etc/mke2fs.conf "$root/etc/"

# rewind itself, for scripts/rewind-attach inside the guest.
if [ -n "${REWIND_PLUGIN:-}" ]; then
  mkdir -p "$root/rewind" "$root/usr/bin"
  copy_with_libs "$(command -v nbdkit)" usr/bin/nbdkit
  copy_with_libs /bin/bash bin/bash
  copy_with_libs "$REWIND_PLUGIN" rewind/nbdkit-rewind-plugin.so
  strip --strip-debug "$root/rewind/nbdkit-rewind-plugin.so"
  cp "$here/../../scripts/rewind-attach" "$root/rewind/"
  : >"$root/rewind/preload"
  for lib in ${REWIND_PRELOAD:-}; do
    case "$lib" in
      /*) copy_with_libs "$lib" "${lib#/}" ;;
      *) ;;  # a soname that nbdkit loads anyway, already copied
    esac
    echo "$lib" >>"$root/rewind/preload"
  done
fi
# The dynamic loader where the binaries look for it.
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || {
  mkdir -p "$root/lib64"
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
}

# Modules, in load order (ext4 wants crc32c only as a soft dependency, so it is named).
: >"$root/lib/modules/load"
for m in virtio_pci virtio_blk virtio_console virtio_rng nbd crc32c_generic ext4; do
  modprobe -C /dev/null -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$root/lib/modules/"
  echo "/lib/modules/$(basename "$ko")" >>"$root/lib/modules/load"
done

cp "$here/guest/init" "$root/init"
cp "$here"/guest/scenario-*.sh "$root/scenarios/"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
rm -rf "$root"

# --- how QEMU runs here --------------------------------------------------------------
# /dev/kvm may be there and still not run a stock kernel (kvm_pvm): use KVM only where
# a probe boot reaches the guest's init, else TCG.
if [ ! -f "$out/accel" ]; then
  accel=tcg
  if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
    if timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none \
      -monitor none -no-reboot -serial stdio -kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
      -append "console=ttyS0 quiet panic=-1 rewind.scenario=probe" 2>/dev/null |
      grep -q "REWIND-VM: exit 0"; then
      accel=kvm
    fi
  fi
  echo "$accel" >"$out/accel"
fi
echo "build-guest: kernel $kver, initramfs $(du -h "$out/initrd.img" | cut -f1), $(cat "$out/accel")"
