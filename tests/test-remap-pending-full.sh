#!/usr/bin/env bash
# The table never outgrows its slot.  Pending marks are capped so that
# every spare can still take a sector *and* lose its data later: a lost
# sector keeps a mark of its own and its spare is saved as retired, one
# entry more than the remap it replaces, and that mark cannot be refused
# (the stale origin would be served).  Here every spare holds a sector,
# as many sectors as the cap allows are pending, and then a spare dies:
# the table must still be written (the flush succeeds), the lost sector
# fails its reads, live and after a restart.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

# Sectors 1000-2999 are bad in the ddrescue sense: far more than the
# table has room to mark.
cat >"$tmp/rescue.map" <<MAP
# Mapfile. Created by GNU ddrescue
# current_pos  current_status  current_pass
0x00000000     +               1
#      pos        size  status
0x00000000  0x003E8000  +
0x003E8000  0x007D0000  -
0x00BB8000  0x03448000  +
MAP

server ()
{
  start_server sock "$1" -v \
    --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
    file "$disk" badsector-file="$list" remap-control="$ctl" \
    remap-spare-size=32k remap-read-retries=0 "${@:2}"
}

# 1. Sectors 100-107 take all 8 spares; then the pending marks.
server "$tmp/log" remap-add=100-107 remap-ddrescue="$tmp/rescue.map"
[ "$(ctl_get spares.free)" -eq 0 ] || fail "a spare is still free"
pending=$(ctl_get pending)
[ "$pending" -gt 0 ] || fail "no sector is pending"
grep -q "are pending, as many as the table holds" "$tmp/log" ||
  fail "the pending marks were not capped: $pending"

# 2. Sector 100's spare dies: a read finds it, the sector is lost.
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))
echo "read $spare0" >"$list"
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" -c "read 0 $((101*ss))" \
        2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "reading sector 100 did not fail: $out"
[ "$(ctl_get pending)" -eq $((pending + 1)) ] ||
  fail "sector 100 is not counted lost: $(ctl_get pending)"

# 3. The table with the lost mark and the retired spare fits: a flush
#    (which waits for it) succeeds.
qio "$sock" -c "flush"
! grep -q "writing the remap table failed" "$tmp/log" ||
  fail "the table did not fit: $(grep 'remap table' "$tmp/log")"
stop_server "$sock"

# 4. After a restart sector 100 still fails its reads.
: >"$list"
server "$tmp/log2"
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "read $((100*ss)) $ss" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "sector 100 read after a restart: $out"
stop_server "$sock"
echo "$test_name: PASS"
