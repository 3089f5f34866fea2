#!/usr/bin/env bash
# A sub-sector write to a pending sector merges it with the sector's
# old contents (read-modify-write of the whole 4 KiB unit), like the
# move of a normal sector does (test-remap-rmw.sh).  A write to another
# part of the unit that began before the unit became pending (it saw no
# entry: the fast path, on its way to the origin) must be in what the
# merge reads, or the merge hides it.  Both writes are acknowledged and
# both must be visible, live and after a restart.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdsh

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

server ()
{
  start_server sock "$1" -v \
    --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
    file "$disk" badsector-file="$list" badsector-sector-size=512 \
    remap-control="$ctl" remap-read-retries=0
}

check ()
{
  qio "$sock" -c "read -P 0xaa $((5*ss)) 512" \
              -c "read -P 0x11 $((5*ss + 512)) 512" \
              -c "read -P 0xbb $((5*ss + 1024)) 512" \
              -c "read -P 0x11 $((5*ss + 1536)) 2560"
}

server "$tmp/log"
qio "$sock" -c "write -P 0x11 0 64k"

# Every write takes 2 s.  Write A (0xaa, the first 512 bytes of
# unit 5) is on its way to the origin when a read finds unit 5
# unreadable (pending); then the unit reads again, and write B (0xbb at
# 1024, a piece that fails writes) merges the unit and moves it to a
# spare.
printf 'delay-write 2000\n' >"$list"
timeout 60 qemu-io -f raw "$(uri "$sock")" \
  -c "write -P 0xaa $((5*ss)) 512" >"$tmp/a.out" 2>&1 &
a=$!
track_pid $a
sleep 0.1
printf 'read 40-47\nwrite 42\ndelay-write 2000\n' >"$list"
# (nbdsh: qemu-io would flush when it closes, which takes 2 s here.)
out=$(timeout 30 nbdsh -u "$(uri "$sock")" -c "
try:
    h.pread($ss, $((5*ss)))
    print('read')
except nbd.Error as e:
    print(e.string)" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "the read of unit 5 did not fail: $out"
printf 'write 42\ndelay-write 2000\n' >"$list"
timeout 60 qemu-io -f raw "$(uri "$sock")" \
  -c "write -P 0xbb $((5*ss + 1024)) 512" >"$tmp/b.out" 2>&1 &
b=$!
track_pid $b
# Write A is already sleeping; nothing else needs to be slow.
printf 'write 42\n' >"$list"
for p in $a $b; do
  wait $p || fail "a write failed: $(cat "$tmp/a.out" "$tmp/b.out")"
done
! grep -qiE 'fail|error' "$tmp/a.out" "$tmp/b.out" ||
  fail "a write failed: $(cat "$tmp/a.out" "$tmp/b.out")"

: >"$list"
ctlcmd list | grep -q '"sector":5,"state":"remapped"' ||
  fail "unit 5 is not remapped: $(ctlcmd list)"
check
stop_server "$sock"

server "$tmp/log2"
check
stop_server "$sock"
echo "$test_name: PASS"
