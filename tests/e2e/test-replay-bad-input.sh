#!/usr/bin/env bash
# Bad targets and damaged journals for restore/serve/diff/verify, and abuse of the
# control socket: one clear error line, the documented exit status, no partial
# output, and the server unharmed.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-io python3

cd "$workdir"
truncate -s 16M disk.img
sock=$workdir/nbd.sock
uri=$(uri_of "$sock")
start_server "$sock" image=disk.img journal=disk.rewind segment-size=1M
qemu-io -f raw -t writeback -c 'write -P 1 0 768k' -c flush "$uri" >/dev/null
"$REWIND_CLI" mark disk.rewind good >/dev/null
qemu-io -f raw -t writeback -c 'write -P 2 0 768k' -c 'write -P 3 8M 768k' -c flush "$uri" >/dev/null

# --- the control socket under abuse; the server keeps serving -------------------
ctl=disk.rewind/control.sock
python3 - "$ctl" <<'PY'
import socket, sys, time
path = sys.argv[1]
def ask(data, close_early=False):
    s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(path)
    s.sendall(data)
    if close_early:
        s.close(); return None
    out = b""
    while not out.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk: break
        out += chunk
    s.close(); return out.decode()
assert ask(b"HELLO\n").startswith("ERR unknown request"), "malformed request"
assert ask(b"MARK has space\n").startswith("ERR mark name 'has space'"), "bad mark name"
assert ask(b"MARK good\n").startswith("ERR mark 'good' already exists"), "duplicate mark"
big = ask(b"MARK " + b"x" * 5000 + b"\n")
assert big.startswith("ERR request longer than 1024 bytes"), big
ask(b"MARK half-sent-and-gone", close_early=True)          # peer vanishes mid-message
stall = socket.socket(socket.AF_UNIX); stall.connect(path); stall.sendall(b"STA")  # stays open
assert ask(b"STATUS\n").startswith('OK {"last_seq":'), "status while another peer stalls"
stall.close()
PY
[ $? -eq 0 ] || fail "control socket abuse"
"$REWIND_CLI" mark disk.rewind after-abuse >/dev/null || fail "mark after the abuse"
qemu-io -f raw -c 'read -P 3 8M 768k' "$uri" | grep -q 'read 786432/786432' || fail "server harmed"
stop_server
"$REWIND_CLI" log --json disk.rewind | grep -q '"name":"half-sent-and-gone"' && fail "a half-sent mark was inserted"

last=$("$REWIND_CLI" info --json disk.rewind | json_field '["last_seq"]')
expect_cli 1 "no mark named 'nope'" restore disk.rewind --mark nope -o out.img
expect_cli 1 "seq $((last + 1)) does not exist; the journal ends at seq $last" restore disk.rewind --seq $((last + 1)) -o out.img
expect_cli 1 "is before the oldest restorable point; the restorable range is seq 0" restore disk.rewind --at 2001-01-01T00:00:00Z -o out.img
expect_cli 2 "'tomorrow' is not a time" restore disk.rewind --at tomorrow -o out.img
expect_cli 2 "give only one of --at, --seq and --mark" restore disk.rewind --seq 1 --mark good -o out.img
expect_cli 2 "give -o OUT" restore disk.rewind --mark good
expect_cli 1 "no mark named 'nope'" serve disk.rewind --mark nope
expect_cli 2 "--from (seq" diff disk.rewind --from seq:$last --to seq:1
[ ! -e out.img ] || fail "a failed restore left out.img"
"$REWIND_CLI" restore disk.rewind --mark good -o out.img >/dev/null
expect_cli 1 "out.img exists; give --force" restore disk.rewind --mark good -o out.img
"$REWIND_CLI" restore disk.rewind --mark good -o out.img --force >/dev/null || fail "--force"

# A time after the newest record gives the newest state and says where it ended.
"$REWIND_CLI" restore disk.rewind --at now -o newest.img >now.txt
grep -q "newest state, ending at seq $last" now.txt || fail "no note for a time after the end: $(cat now.txt)"
cmp newest.img disk.img || fail "newest state differs from the image"

# --- a damaged segment inside the range: named, no partial output ----------------
seg=$(ls disk.rewind/segments/*.seg | tail -1)
segname=$(basename "$seg")
python3 - "$seg" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 0x40]))
PY
expect_cli 1 "segment $segname offset" restore disk.rewind --no-image-reads -o damaged.img
[ ! -e damaged.img ] && [ ! -e damaged.img.rewind-tmp ] || fail "a failed restore left output behind"
expect_cli 1 "segment $segname offset" verify disk.rewind
# Points before the damaged segment still restore.
"$REWIND_CLI" restore disk.rewind --mark good -o before.img --force >/dev/null || fail "restore before the damage"
cmp before.img out.img || fail "restore before the damage differs"
echo "PASS: replay bad input"
