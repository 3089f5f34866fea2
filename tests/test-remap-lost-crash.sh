#!/usr/bin/env bash
# The "data lost" mark survives a crash in the middle of its sector's
# move (issue 10, item 7).  Sector 5's spare dies, so the sector is
# lost: reads fail, because the origin holds older data.  Then a whole
# write to it fails on the origin and on every spare (each write takes
# 1 s), and the table is written meanwhile (each failing spare is
# retired).  SIGKILL in that window: after a restart, reads of sector
# 5 must still fail, never return the origin's stale bytes.
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

# count_syncs LOG: metadata writes done so far.
count_syncs ()
{
  grep -c "wrote metadata generation" "$1" || true
}

server "$tmp/log"
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))
qio "$sock" -c "write -P 0x11 0 64k"
echo "write 5" >"$list"
qio "$sock" -c "write -P 0x22 $((5*ss)) $ss"
printf 'write 5\nread %d\n' "$spare0" >"$list"
qio_eio "$sock" -c "read $((5*ss)) $ss"
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 5 is not lost"
ctlcmd sync >/dev/null

# The window.
printf 'write 5\nwrite %d-%d\ndelay-write 1000\n' "$spare0" $((spare0 + 7)) \
  >"$list"
timeout 60 qemu-io -f raw "$(uri "$sock")" \
  -c "write -P 0x33 $((5*ss)) $ss" >"$tmp/w.out" 2>&1 &
writer=$!
track_pid $writer
deadline=$(( $(now_ms) + $(scaled_ms 30000) ))
until grep -q "writing spare 1 for sector 5 failed" "$tmp/log"; do
  [ "$(now_ms)" -lt $deadline ] || fail "the move did not start"
  sleep 0.05
done
syncs=$(count_syncs "$tmp/log")
until [ "$(count_syncs "$tmp/log")" -gt "$syncs" ]; do
  [ "$(now_ms)" -lt $deadline ] || fail "no table write during the move"
  sleep 0.05
done
pid=$(cat "$sock.pid")
kill -KILL "$pid"
wait "$(cat "$sock.wrapper")" 2>/dev/null || true
wait $writer 2>/dev/null || true
rm -f "$sock"

# After the crash: still lost.
: >"$list"
server "$tmp/log2"
qio_eio "$sock" -c "read $((5*ss)) $ss"
[ "$(ctl_get pending)" -eq 1 ] || fail "the lost mark is gone: $(ctlcmd list)"
stop_server "$sock"
echo "$test_name: PASS"
