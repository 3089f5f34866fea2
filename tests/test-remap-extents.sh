#!/usr/bin/env bash
# Proves that block status never hides a sector the filter knows about:
# on a sparse disk, remapped, pending and lost sectors are reported as
# allocated data, so that a copying client that skips holes reads them
# (and fails on the unreadable ones) instead of writing zeros.  The map
# of the first 32 sectors is checked against a model, sector by sector.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo nbdcopy qemu-io python3

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

start_server sock "$tmp/log" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl"

# Sectors 0-1 hold data.  Sectors 5 and 7 fail a write and are
# remapped (their origin stays a hole); then sector 5's spare stops
# reading, so its data is lost.  Sector 20 was never written and stops
# reading: one read fails and it becomes pending.
qio "$sock" -c "write -P 0x11 0 $((2*ss))"
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))  # in plugin sectors
printf 'write 5\nwrite 7\n' >"$list"
qio "$sock" -c "write -P 0x55 $((5*ss)) $ss" -c "write -P 0x77 $((7*ss)) $ss"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":0' ||
  fail "sector 5 is not on spare 0: $(ctlcmd list)"
printf 'read %d\nread 20\n' "$spare0" >"$list"
for s in 5 20; do
  timeout 30 qemu-io -f raw "$(uri "$sock")" -c "read $((s*ss)) $ss" \
    >/dev/null 2>&1 && fail "reading unreadable sector $s succeeded"
done
[ "$(ctl_get pending)" -eq 2 ] || fail "sectors 5 and 20 are not pending"
ctlcmd list | grep -q '"sector":7,"state":"remapped"' || fail "7 not remapped"

# The map, per sector, against the model: data where written, remapped
# or pending; a hole everywhere else.
timeout 30 nbdinfo --map "$(uri "$sock")" >"$tmp/map"
cat "$tmp/map"
/usr/bin/python3 - "$tmp/map" $ss <<'EOF' || fail "the map does not match"
import sys
ss = int(sys.argv[2])
data = {0, 1, 5, 7, 20}
kind = {}
for line in open(sys.argv[1]):
    off, length, typ = (int(x) for x in line.split()[:3])
    for s in range(off // ss, (off + length) // ss):
        kind[s] = typ
bad = [s for s in range(32) if (kind.get(s) == 0) != (s in data)]
for s in bad:
    print("sector %d: type %s, expected %s" %
          (s, kind.get(s), "data" if s in data else "hole"))
sys.exit(1 if bad else 0)
EOF

# A copy of the export must fail on the unreadable sectors, not write
# zeros in its place and succeed.
if timeout 60 nbdcopy "$(uri "$sock")" "$tmp/copy.img" 2>"$tmp/copy.err"; then
  fail "nbdcopy copied an unreadable sector and exited 0"
fi
cat "$tmp/copy.err"

stop_server
