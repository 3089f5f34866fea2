#!/usr/bin/env bash
# A read that finds a remapped sector's spare dead (the sector becomes
# lost) while a write of the whole sector is moving it to a new spare
# under the unit lock.  The write wins: the sector is remapped to the
# new spare with the written data, and it is not counted as pending
# any more (the move replaced the lost mark).  The same when the
# control socket's `unmap` copies the sector back to the origin while a
# read marks it lost: the sector is normal again and not pending.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

server ()
{
  start_server sock "$1" -v -D remap.verbose=1 \
    --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
    file "$disk" badsector-file="$list" remap-control="$ctl" \
    remap-spare-size=32k remap-read-retries=0
}

# read_bg LOG OFFSET: one qemu-io read of a sector in the background
# (it is expected to fail: its spare is dead).
read_bg ()
{
  timeout 60 qemu-io -f raw "$(uri "$sock")" -c "read $2 $ss" >"$1" 2>&1 &
  track_pid $!
  reader=$!
}

server "$tmp/log"
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))
qio "$sock" -c "write -P 0x11 0 64k"

# 1. Sector 5 is remapped to spare 0, with 0x22.
echo "write 5" >"$list"
qio "$sock" -c "write -P 0x22 $((5*ss)) $ss"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":0' ||
  fail "sector 5 is not on spare 0: $(ctlcmd list)"

# 2. Spare 0 dies (reads and writes fail); every write takes 1.5 s.
#    A whole-sector write of 0x33 fails on spare 0 and moves sector 5
#    to spare 1; while it does, a read finds spare 0 unreadable.
printf 'write 5\nrw %d\ndelay-write 1500\n' "$spare0" >"$list"
timeout 60 qemu-io -f raw "$(uri "$sock")" \
  -c "write -P 0x33 $((5*ss)) $ss" >"$tmp/w.out" 2>&1 &
writer=$!
track_pid $writer
sleep 0.3
read_bg "$tmp/r.out" $((5*ss))
wait $reader || true
# The rest (the metadata writes) need not be slow.
printf 'write 5\nrw %d\n' "$spare0" >"$list"
wait $writer || fail "the write failed: $(cat "$tmp/w.out")"
! grep -qiE 'fail|error' "$tmp/w.out" ||
  fail "the write failed: $(cat "$tmp/w.out")"
grep -q "Input/output error" "$tmp/r.out" ||
  fail "the read of a dead spare did not fail (the race was not set up): \
$(cat "$tmp/r.out")"
: >"$list"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":1' ||
  fail "sector 5 is not on spare 1: $(ctlcmd list)"
qio "$sock" -c "read -P 0x33 $((5*ss)) $ss"
[ "$(ctl_get pending)" -eq 0 ] ||
  fail "sector 5 is remapped but $(ctl_get pending) sector(s) counted pending"

# 3. Unmap sector 5: it reads spare 1, then writes the data back to
#    the origin (1.5 s); meanwhile spare 1 dies and a read finds it
#    unreadable.
printf 'delay-write 1500\n' >"$list"
ctlcmd "unmap 5" >"$tmp/unmap.out" 2>&1 &
unmapper=$!
track_pid $unmapper
sleep 0.3
printf 'read %d\ndelay-write 1500\n' $((spare0 + 1)) >"$list"
read_bg "$tmp/r2.out" $((5*ss))
wait $reader || true
printf 'read %d\n' $((spare0 + 1)) >"$list"
wait $unmapper || fail "unmap failed: $(cat "$tmp/unmap.out")"
grep -q "Input/output error" "$tmp/r2.out" ||
  fail "the read of a dead spare did not fail (the race was not set up): \
$(cat "$tmp/r2.out")"
: >"$list"
! ctlcmd list | grep -q '"sector":5' ||
  fail "sector 5 still has an entry after unmap: $(ctlcmd list)"
qio "$sock" -c "read -P 0x33 $((5*ss)) $ss"
[ "$(ctl_get pending)" -eq 0 ] ||
  fail "sector 5 is normal but $(ctl_get pending) sector(s) counted pending"
stop_server "$sock"
echo "$test_name: PASS"
