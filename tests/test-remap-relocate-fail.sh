#!/usr/bin/env bash
# A remapped sector whose spare fails writes, when no other spare takes
# the data either, keeps its last good mapping (issue 10, item 1): the
# new write fails, reads return the last acknowledged data, live and
# after a restart, and no spare is leaked.  Then the other way out: if
# the old spare cannot be read either, a partial write makes the
# sector lost and reads fail with EIO, never the stale origin.
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
    remap-spare-size=32k
}

# 1. Sector 5 holds 0x11 on the origin, then is remapped with 0x22.
server "$tmp/log"
[ "$(ctl_get spares.total)" -eq 8 ] || fail "expected 8 spares"
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))
qio "$sock" -c "write -P 0x11 0 64k"
echo "write 5" >"$list"
qio "$sock" -c "write -P 0x22 $((5*ss)) $ss"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":0' ||
  fail "sector 5 is not on spare 0: $(ctlcmd list)"

# 2. Every spare now fails writes: a new write to sector 5 fails (no
#    spare takes it), and sector 5 still reads its last data.
printf 'write 5\nwrite %d-%d\n' "$spare0" $((spare0 + 7)) >"$list"
out=$(timeout 60 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0x33 $((5*ss)) $ss" 2>&1) || true
echo "$out" | grep -qE "Input/output error|No space left" ||
  fail "a write no spare could take did not fail: $out"
qio "$sock" -c "read -P 0x22 $((5*ss)) $ss"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":0' ||
  fail "sector 5 lost its mapping: $(ctlcmd list)"
# Spare 0 still holds sector 5; the 7 others failed and are retired;
# none is lost in between.
[ "$(ctl_get spares.retired)" -eq 7 ] ||
  fail "expected 7 retired spares, got $(ctl_get spares.retired)"
[ "$(ctl_get spares.free)" -eq 0 ] || fail "free spares left over"
[ "$(ctl_get spares.used)" -eq 1 ] ||
  fail "expected 1 spare in use, got $(ctl_get spares.used)"
# A second writer is not left waiting: this one fails the same way.
out=$(timeout 60 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0x44 $((5*ss)) $ss" 2>&1) || true
echo "$out" | grep -qE "Input/output error|No space left" ||
  fail "the second write did not fail: $out"
stop_server "$sock"

# 3. After a restart: the same mapping, the same data.
: >"$list"
server "$tmp/log2"
qio "$sock" -c "read -P 0x22 $((5*ss)) $ss"

# 4. Spare 0 now fails reads too: a partial write cannot be merged
#    with the old data, so sector 5 is lost and reads fail, live and
#    after a restart (not 0x11 from the origin).
printf 'write 5\nrw %d-%d\n' "$spare0" $((spare0 + 7)) >"$list"
out=$(timeout 60 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0x55 $((5*ss)) 512" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "a partial write to a sector whose spare died did not fail: $out"
qio_eio "$sock" -c "read $((5*ss)) $ss"
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 5 is not pending"
stop_server "$sock"
: >"$list"
server "$tmp/log3"
qio_eio "$sock" -c "read $((5*ss)) $ss"
stop_server "$sock"
echo "$test_name: PASS"
