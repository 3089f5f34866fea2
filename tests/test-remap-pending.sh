#!/usr/bin/env bash
# Proves the read side of failing media: a sector that cannot be read
# gives the client EIO (never invented data) and becomes *pending*;
# its neighbours still read; a partial write to it fails; a full write
# either recovers it in place (it verifies) or moves it to a spare; an
# intermittent sector is retried and counted, not marked.  Every step
# is checked in the counters of the control socket.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

start_server sock "$tmp/log" -v -D remap.verbose=1 \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl"
qio "$sock" -c "write -P 0x11 0 1M"

# 1. Sector 20 stops reading.  A read across it fails with EIO...
echo "read 20" >"$list"
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "read -P 0x11 $((16*ss)) $((8*ss))" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "a read across an unreadable sector did not fail with EIO: $out"
# ... while its neighbours read fine, and the sector is now pending.
qio "$sock" -c "read -P 0x11 $((16*ss)) $((4*ss))" \
            -c "read -P 0x11 $((21*ss)) $((3*ss))"
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 20 is not pending"
[ "$(ctl_get counters.read_errors)" -ge 1 ] || fail "read_errors did not move"
[ "$(ctl_get counters.retries)" -ge 3 ] || fail "the read was not retried"
ctlcmd list |
  grep -q '"sector":20,"state":"pending"' || fail "list does not show 20"

# 2. A partial write to a pending sector fails (its old bytes are gone).
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0x22 $((20*ss + 512)) 512" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "a partial write to a pending sector did not fail: $out"
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 20 stopped being pending"

# 3. A full write while the sector still cannot be read back: it is
#    written in place, fails verification and moves to a spare.
remaps=$(ctl_get counters.remaps)
qio "$sock" -c "write -P 0x33 $((20*ss)) $ss" -c "read -P 0x33 $((20*ss)) $ss"
[ "$(ctl_get pending)" -eq 0 ] || fail "sector 20 is still pending"
[ "$(ctl_get counters.remaps)" -eq $((remaps + 1)) ] || fail "no remap counted"
grep -q "sector 20 remapped to spare" "$tmp/log" || fail "no remap logged"

# 4. Sector 30 fails to read, then heals: a full write recovers it in
#    place, with no spare used.
echo "read 30" >"$list"
timeout 30 qemu-io -f raw "$(uri "$sock")" -c "read $((30*ss)) $ss" \
  >/dev/null 2>&1 || true
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 30 is not pending"
: >"$list"
used=$(ctl_get spares.used)
qio "$sock" -c "write -P 0x44 $((30*ss)) $ss"
[ "$(ctl_get pending)" -eq 0 ] || fail "sector 30 is still pending"
[ "$(ctl_get counters.recovered)" -eq 1 ] || fail "recovered did not move"
[ "$(ctl_get spares.used)" -eq "$used" ] || fail "a recovered sector took a spare"
grep -q "pending sector 30 rewrote and verified: recovered" "$tmp/log" ||
  fail "recovery not logged"
bytes_all "$disk" $((30*ss)) $ss 44 || fail "sector 30 not rewritten in place"

# 5. An intermittent sector (fails once, then reads) is retried and
#    counted, and is not pending.
retries=$(ctl_get counters.retries)
echo "read-once 40" >"$list"
qio "$sock" -c "read -P 0x11 $((40*ss)) $ss"
[ "$(ctl_get counters.retries)" -gt "$retries" ] || fail "retry not counted"
[ "$(ctl_get pending)" -eq 0 ] || fail "an intermittent sector became pending"

# 6. The counters are saved with every metadata write (here forced by
#    the sync command): after a restart they are still there.
ctlcmd sync | grep -q '"ok":true' ||
  fail "sync failed"
reads=$(ctl_get counters.reads)
remaps=$(ctl_get counters.remaps)
stop_server "$sock"
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl"
[ "$(ctl_get counters.remaps)" -eq "$remaps" ] || fail "remaps not persisted"
[ "$(ctl_get counters.reads)" -ge "$reads" ] || fail "reads not persisted"
[ "$(ctl_get counters.recovered)" -eq 1 ] || fail "recovered not persisted"
qio "$sock" -c "read -P 0x33 $((20*ss)) $ss" -c "read -P 0x44 $((30*ss)) $ss"
stop_server "$sock"

# 7. With remap-pending-partial=zero a partial write to a pending sector
#    remaps it with zeros around the new bytes.
: >"$list"
start_server sock "$tmp/log3" \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl" \
  remap-pending-partial=zero
echo "rw 50" >"$list"
timeout 30 qemu-io -f raw "$(uri "$sock")" -c "read $((50*ss)) $ss" \
  >/dev/null 2>&1 || true
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 50 is not pending"
qio "$sock" -c "write -P 0x55 $((50*ss + 1024)) 512" \
            -c "read -P 0 $((50*ss)) 1024" \
            -c "read -P 0x55 $((50*ss + 1024)) 512" \
            -c "read -P 0 $((50*ss + 1536)) $((ss - 1536))"
[ "$(ctl_get pending)" -eq 0 ] || fail "sector 50 is still pending"
stop_server "$sock"
echo "$test_name: PASS"
