#!/usr/bin/env bash
# Proves what happens to the spare pool on failing media: a spare that
# fails a write is retired (never reused, also after a restart) and the
# sector moves on; a spare that fails a read makes its sector pending;
# use thresholds are logged once each; exhaustion gives ENOSPC while
# everything already remapped stays readable; a burst of new bad
# sectors raises the "failing fast" alarm.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

# Eight spares, warnings at 25% and 50%, an alarm past 4 bad sectors a
# minute.
start_server sock "$tmp/log" -v -D remap.verbose=1 \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl" \
  remap-spare-size=32k remap-warn=25%,50% remap-storm-limit=4
[ "$(ctl_get spares.total)" -eq 8 ] || fail "expected 8 spares"
qio "$sock" -c "write -P 0x11 0 1M"
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))  # in plugin sectors

# 1. Spare 0 fails writes: the first remap burns it and takes spare 1.
printf 'write 5\nwrite %d\n' "$spare0" >"$list"
qio "$sock" -c "write -P 0x22 $((5*ss)) $ss" -c "read -P 0x22 $((5*ss)) $ss"
[ "$(ctl_get spares.retired)" -eq 1 ] || fail "spare 0 was not retired"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":1' ||
  fail "sector 5 is not on spare 1: $(ctlcmd list)"
ctlcmd list | grep -q '"state":"retired","spare":0' ||
  fail "list does not show spare 0 retired"
grep -q "spare 0 (sector 5) failed: retired" "$tmp/log" ||
  fail "retirement not logged"

# 2. Spare 1 fails reads: sector 5 can no longer be read, is pending,
#    and spare 1 is retired too.  A full write moves it to spare 2.
printf 'read %d\n' $((spare0 + 1)) >"$list"
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" -c "read $((5*ss)) $ss" 2>&1) ||
  true
echo "$out" | grep -q "Input/output error" ||
  fail "reading a sector whose spare died did not fail: $out"
[ "$(ctl_get pending)" -eq 1 ] || fail "sector 5 is not pending"
[ "$(ctl_get spares.retired)" -eq 2 ] || fail "spare 1 was not retired"
: >"$list"
echo "write 5" >"$list"
qio "$sock" -c "write -P 0x33 $((5*ss)) $ss" -c "read -P 0x33 $((5*ss)) $ss"
ctlcmd list | grep -q '"sector":5,"state":"remapped","spare":2' ||
  fail "sector 5 is not on spare 2: $(ctlcmd list)"

# 3. Retired spares stay retired across a restart.
stop_server "$sock"
start_server sock "$tmp/log2" -v -D remap.verbose=1 \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl" \
  remap-warn=25%,50% remap-storm-limit=4
[ "$(ctl_get spares.retired)" -eq 2 ] || fail "retired spares forgotten"
qio "$sock" -c "read -P 0x33 $((5*ss)) $ss"

# 4. Use up the pool: sectors 6.. fail one by one.  Thresholds are
#    logged once each, exhaustion once, and the write that finds no
#    spare fails with ENOSPC.
for s in 6 7 8 9 10; do
  echo "write $s" >"$list"
  qio "$sock" -c "write -P 0x44 $((s*ss)) $ss"
done
[ "$(ctl_get spares.free)" -eq 0 ] || fail "the pool is not used up"
[ "$(grep -c '25.00% threshold crossed' "$tmp/log2")" -eq 1 ] ||
  fail "the 25% warning was not logged exactly once"
[ "$(grep -c '50.00% threshold crossed' "$tmp/log2")" -eq 1 ] ||
  fail "the 50% warning was not logged exactly once"
for s in 11 12; do
  echo "write $s" >"$list"
  out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
          -c "write -P 0x55 $((s*ss)) $ss" 2>&1) || true
  echo "$out" | grep -q "No space left on device" ||
    fail "a write needing a spare did not fail with ENOSPC: $out"
done
[ "$(grep -c 'spare pool is exhausted' "$tmp/log2")" -eq 1 ] ||
  fail "exhaustion was not logged exactly once"
[ "$(ctl_get health)" = failing ] || fail "health is not failing"
# Everything already remapped still reads, and ordinary sectors work.
qio "$sock" -c "read -P 0x33 $((5*ss)) $ss" \
            -c "read -P 0x44 $((6*ss)) $((5*ss))" \
            -c "write -P 0x66 $((100*ss)) $ss" -c "read -P 0x66 $((100*ss)) $ss"

# 5. Seven new bad sectors within the minute, limit 4: the alarm fired
#    once.
[ "$(grep -c 'the disk is failing fast' "$tmp/log2")" -eq 1 ] ||
  fail "the remap-storm alarm was not logged exactly once"
stop_server "$sock"
echo "$test_name: PASS"
