#!/usr/bin/env bash
# dist/libvirt/domain.xml, the README's libvirt example, is a valid libvirt domain
# whose disk is a rewind volume over NBD on a UNIX socket.
source "$(dirname "$0")/functions.sh"
requires virt-xml-validate python3
xml=$(cd "$(dirname "$0")/../../dist/libvirt" && pwd)/domain.xml
virt-xml-validate "$xml" domain >"$workdir/validate.log" 2>&1 ||
  { cat "$workdir/validate.log"; fail "virt-xml-validate rejects $xml"; }
python3 - "$xml" <<'PY' || fail "the disk of $xml is not a rewind volume over NBD"
import sys, xml.etree.ElementTree as ET
disk = ET.parse(sys.argv[1]).find("devices/disk")
assert disk.get("type") == "network"
assert disk.find("source").get("protocol") == "nbd"
assert disk.find("source/host").get("transport") == "unix"
assert disk.find("source/host").get("socket").startswith("/run/rewind/")
assert disk.find("driver").get("cache") == "writeback"
PY
echo "PASS: the libvirt example validates"
