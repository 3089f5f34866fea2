#!/usr/bin/env bash
# Proves the tools for media that lies or is already known bad:
# remap-verify catches a plugin that reports a write done but drops it;
# remap-add and remap-add-file remap sectors at startup with their
# data; remap-ddrescue marks a GNU ddrescue mapfile's bad areas pending
# and leaves the not-tried areas alone.  Also checks that the I/O
# counters move.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

# 1. Without verification a dropped write is lost silently...
echo "drop 7" >"$list"
start_server sock "$tmp/log1" \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl"
qio "$sock" -c "write -P 0x11 0 1M"
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "read -P 0x11 $((7*ss)) $ss" 2>&1) || true
echo "$out" | grep -q "Pattern verification failed" ||
  fail "the test source did not drop the write: $out"
for c in reads writes bytes_read bytes_written; do
  [ "$(ctl_get counters.$c)" -gt 0 ] || fail "counter $c did not move"
done
stop_server "$sock"

# 2. ... with remap-verify=yes it is caught and the sector remapped.
start_server sock "$tmp/log2" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl" remap-verify=yes
qio "$sock" -c "write -P 0x22 $((4*ss)) $((8*ss))" \
            -c "read -P 0x22 $((4*ss)) $((8*ss))"
grep -q "sector 7 remapped to spare" "$tmp/log2" ||
  fail "verification did not remap the dropped sector"
[ "$(ctl_get counters.remaps)" -eq 1 ] || fail "expected exactly one remap"
[ "$(ctl_get counters.write_errors)" -ge 1 ] || fail "write_errors did not move"
[ "$(ctl_get counters.metadata_syncs)" -ge 1 ] || fail "metadata_syncs did not move"
[ "$(ctl_get counters.last_sync_ns)" -gt 0 ] || fail "last_sync_ns did not move"
redirected=$(ctl_get counters.redirected_ios)
qio "$sock" -c "read -P 0x22 $((7*ss)) $ss"
[ "$(ctl_get counters.redirected_ios)" -gt "$redirected" ] ||
  fail "redirected_ios did not move"
stop_server "$sock"

# 3. remap-add and remap-add-file: sectors remapped at startup keep
#    their current data; already remapped sectors are left alone.
printf '# known bad\n20\n30-31\n' >"$tmp/add.txt"
start_server sock "$tmp/log3" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl" remap-add=12,14-15 remap-add-file="$tmp/add.txt"
for s in 12 14 15 20 30 31; do
  ctlcmd list 0 100 | grep -q "\"sector\":$s,\"state\":\"remapped\"" ||
    fail "sector $s was not remapped at startup"
done
[ "$(ctl_get spares.used)" -eq 7 ] || fail "expected 7 spares used"
qio "$sock" -c "read -P 0x11 $((12*ss)) $ss" -c "read -P 0x22 $((11*ss)) $ss" \
            -c "read -P 0x11 $((20*ss)) $ss" -c "read -P 0x11 $((30*ss)) $((2*ss))"
stop_server "$sock"
# A sector past the end is refused.
r=0; run_refused "$tmp/log4" --filter="$REMAP_FILTER" file "$disk" \
  remap-add=99999999 || r=$?
[ $r -ne 0 ] || fail "remap-add past the end was accepted"
grep -q "past the end" "$tmp/log4" || fail "no clear message: $(cat "$tmp/log4")"

# 4. A ddrescue mapfile: '-' areas (sectors 40-41, and a 512-byte area
#    inside sector 44) become pending; '?' (sector 42) is left alone.
cat >"$tmp/rescue.map" <<MAP
# Mapfile. Created by GNU ddrescue
# current_pos  current_status  current_pass
0x00000000     +               1
#      pos        size  status
0x00000000  0x00028000  +
0x00028000  0x00002000  -
0x0002A000  0x00001000  ?
0x0002B000  0x00001200  +
0x0002C200  0x00000200  -
0x0002C400  0x03FD3C00  +
MAP
start_server sock "$tmp/log5" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl" remap-ddrescue="$tmp/rescue.map"
for s in 40 41 44; do
  ctlcmd list 0 100 | grep -q "\"sector\":$s,\"state\":\"pending\"" ||
    fail "sector $s is not pending: $(ctlcmd list 0 100)"
done
ctlcmd list 0 100 | grep -q '"sector":42,' && fail "sector 42 was touched"
[ "$(ctl_get pending)" -eq 3 ] || fail "expected 3 pending sectors"
stop_server "$sock"
echo "bad mapfile" >"$tmp/bad.map"
r=0; run_refused "$tmp/log6" --filter="$REMAP_FILTER" file "$disk" \
  remap-ddrescue="$tmp/bad.map" || r=$?
[ $r -ne 0 ] || fail "a broken mapfile was accepted"
grep -q "remap-ddrescue" "$tmp/log6" || fail "no clear message"
echo "$test_name: PASS"
