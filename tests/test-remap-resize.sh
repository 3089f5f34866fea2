#!/usr/bin/env bash
# A disk resized under an internal remap region.  Grown: the filter
# refuses it ("was it grown?") and changes nothing; remapctl
# find-region finds the old region, move-region moves it to the new
# end, and the server then serves the new size with the remapped data.
# Shrunk: refused with a message that says it shrank.  move-region
# killed at any point leaves a disk that either loads with the remap
# (new region) or is refused as grown and finishes when run again.
# Resized by less than a sector: refused as grown or shrunk, not as
# another disk's metadata (whose way out would be remap-format=yes).
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo truncate
: "${REMAPCTL:=$_top_dir/tools/remapctl}"
[ -x "$REMAPCTL" ] || fail "$REMAPCTL not found (run make first)"
ss=4096

# An image with sector 5 remapped, holding 0x5a, and 0x11 in sector 0.
make_image ()                   # make_image FILE
{
  truncate -s 64M "$1"
  start_server sock "$tmp/mk.log" --filter="$REMAP_FILTER" file "$1" \
    remap-add=5
  qio "$sock" -c "write -P 0x5a $((5*ss)) $ss" -c "write -P 0x11 0 $ss"
  stop_server "$sock"
  "$REMAPCTL" --disk="$1" show | grep -E '^ +5 +remapped' >/dev/null ||
    fail "sector 5 is not remapped in $1"
}

first64m_md5 () { head -c $((64*1024*1024)) "$1" | md5sum | cut -d' ' -f1; }

# 1. Grown by 1 GiB: refused, and nothing written.
disk=$tmp/grown.img
make_image "$disk"
before=$(file_md5 "$disk")
truncate -s +1G "$disk"
grown_md5=$(file_md5 "$disk")
r=0
try_start "$tmp/log1" --filter="$REMAP_FILTER" file "$disk" || r=$?
cat "$tmp/log1"
[ $r -ne $TRY_STARTED ] || fail "a grown disk was served (its remaps lost)"
grep -q "no remap metadata at the end of the disk, but the disk is not blank: was it grown?" \
  "$tmp/log1" || fail "the refusal does not ask whether it was grown"
grep -q "move-region" "$tmp/log1" || fail "the refusal does not name move-region"
[ "$(file_md5 "$disk")" = "$grown_md5" ] || fail "the refused start wrote"
[ "$(first64m_md5 "$disk")" = "$before" ] || fail "the old data changed"

# 2. find-region says where, quietly on a pipe.
"$REMAPCTL" --disk="$disk" find-region >"$tmp/find" 2>"$tmp/find.err" ||
  fail "find-region failed: $(cat "$tmp/find.err")"
cat "$tmp/find"
grep -q "made for a disk of $((64*1024*1024)) bytes" "$tmp/find" ||
  fail "find-region does not give the old size"
[ ! -s "$tmp/find.err" ] || fail "find-region printed progress on a pipe"
[ "$(file_md5 "$disk")" = "$grown_md5" ] || fail "find-region wrote"
# On a terminal (script(1) gives it one) it shows its progress.
if command -v script >/dev/null; then
  timeout 60 script -qec "'$REMAPCTL' --disk='$disk' find-region" /dev/null \
    >"$tmp/tty" 2>&1 || fail "find-region on a terminal failed"
  grep -q "scanning .*100% (" "$tmp/tty" ||
    fail "find-region shows no progress on a terminal"
fi

# 3. move-region, then the server serves the new size with the remap.
"$REMAPCTL" --disk="$disk" move-region || fail "move-region failed"
start_server sock "$tmp/log3" --filter="$REMAP_FILTER" file "$disk"
size=$(export_size "$sock")
[ "$size" -gt $((1024*1024*1024)) ] || fail "export size $size after the move"
qio "$sock" -c "read -P 0x5a $((5*ss)) $ss" -c "read -P 0x11 0 $ss" \
  -c "write -P 0x77 $((size - ss)) $ss"
stop_server "$sock"
"$REMAPCTL" --disk="$disk" show | grep -E '^ +5 +remapped' >/dev/null ||
  fail "sector 5 is not remapped after the move"
"$REMAPCTL" --disk="$disk" check || fail "check after the move"
# No stray region is left to be found.
"$REMAPCTL" --disk="$disk" find-region | grep -q "already at its end" ||
  fail "find-region after the move"
# And again after a restart.
start_server sock "$tmp/log3b" --filter="$REMAP_FILTER" file "$disk"
qio "$sock" -c "read -P 0x5a $((5*ss)) $ss" -c "read -P 0x77 $((size - ss)) $ss"
stop_server "$sock"

# 4. Shrunk by 64 KiB (header B cut off): refused as shrunk, unchanged;
#    move-region refuses too.
small=$tmp/shrunk.img
make_image "$small"
truncate -s -64K "$small"
shrunk_md5=$(file_md5 "$small")
r=0
try_start "$tmp/log4" --filter="$REMAP_FILTER" file "$small" || r=$?
cat "$tmp/log4"
[ $r -ne $TRY_STARTED ] || fail "a shrunk disk was served"
grep -q "shrank" "$tmp/log4" || fail "the refusal does not say it shrank"
r=0
"$REMAPCTL" --disk="$small" move-region 2>"$tmp/err4" || r=$?
cat "$tmp/err4"
[ $r -eq 3 ] && grep -q "shrank" "$tmp/err4" ||
  fail "move-region on a shrunk disk: status $r"
[ "$(file_md5 "$small")" = "$shrunk_md5" ] || fail "the shrunk disk changed"

# 5. move-region killed part-way (through nbdkit, each write slowed),
#    at several points: every time, either the server loads the moved
#    region, or refuses the disk as grown and move-region run again
#    finishes; the remapped data is there at the end.
make_image "$tmp/base.img"
truncate -s +256M "$tmp/base.img"
for delay_ms in 150 400 700 1000 1500 2500; do
  img=$tmp/kill$delay_ms.img
  cp --sparse=always "$tmp/base.img" "$img"
  echo "delay-write 100" >"$tmp/slow"
  start_server plain "$tmp/plain$delay_ms.log" \
    --filter="$BADSECTOR_FILTER" file "$img" badsector-file="$tmp/slow"
  timeout 60 "$REMAPCTL" --uri="$(uri "$plain")" move-region \
    >"$tmp/mv$delay_ms" 2>&1 &
  mv_pid=$!
  track_pid $mv_pid
  sleep "$(awk "BEGIN { print $delay_ms / 1000 }")"
  kill -KILL $mv_pid 2>/dev/null || true
  wait $mv_pid 2>/dev/null || true
  stop_server "$plain"
  r=0
  try_start "$tmp/k$delay_ms.log" --filter="$REMAP_FILTER" file "$img" || r=$?
  if [ $r -eq $TRY_STARTED ]; then
    echo "killed after $delay_ms ms: the new region loads"
  else
    cat "$tmp/k$delay_ms.log"
    grep -Eq "was it grown\?|move-region was interrupted" "$tmp/k$delay_ms.log" ||
      fail "killed after $delay_ms ms: refused for another reason"
    echo "killed after $delay_ms ms: refused; finishing the move"
    "$REMAPCTL" --disk="$img" move-region ||
      fail "move-region after a kill at $delay_ms ms"
  fi
  start_server sock "$tmp/k$delay_ms-b.log" --filter="$REMAP_FILTER" \
    file "$img"
  qio "$sock" -c "read -P 0x5a $((5*ss)) $ss" -c "read -P 0x11 0 $ss"
  stop_server "$sock"
  rm -f "$img"
done

# 6. Resized by less than a sector: the last header slot does not move,
#    so the table loads but was made for another size.  Refused as
#    grown (or shrunk), never with remap-format=yes as the way out;
#    move-region says the grow is too small instead of "already at
#    its end"; the truncate filter serves the remaps meanwhile.
small_grow=$tmp/grow512.img
make_image "$small_grow"
truncate -s +512 "$small_grow"
before=$(file_md5 "$small_grow")
r=0
try_start "$tmp/log6" --filter="$REMAP_FILTER" file "$small_grow" || r=$?
cat "$tmp/log6"
[ $r -ne $TRY_STARTED ] || fail "a disk grown by 512 bytes was served"
grep -q "the disk grew by 512 bytes" "$tmp/log6" ||
  fail "the refusal does not say the disk grew by 512 bytes"
! grep -q "remap-format=yes" "$tmp/log6" ||
  fail "the refusal of a grown disk offers remap-format=yes"
r=0
"$REMAPCTL" --disk="$small_grow" move-region >"$tmp/mv6" 2>&1 || r=$?
cat "$tmp/mv6"
[ $r -eq 3 ] && grep -q "too little" "$tmp/mv6" ||
  fail "move-region on a disk grown by 512 bytes: status $r"
[ "$(file_md5 "$small_grow")" = "$before" ] || fail "the refusals wrote"
start_server sock "$tmp/log6b" --filter="$REMAP_FILTER" --filter=truncate \
  file "$small_grow" truncate=$((64*1024*1024))
qio "$sock" -c "read -P 0x5a $((5*ss)) $ss"
stop_server "$sock"

odd=$tmp/odd.img
truncate -s $((64*1024*1024 + 1024)) "$odd"
start_server sock "$tmp/log7a" --filter="$REMAP_FILTER" file "$odd"
stop_server "$sock"
truncate -s -512 "$odd"
r=0
try_start "$tmp/log7" --filter="$REMAP_FILTER" file "$odd" || r=$?
cat "$tmp/log7"
[ $r -ne $TRY_STARTED ] || fail "a disk shrunk by 512 bytes was served"
grep -q "the disk shrank by 512 bytes" "$tmp/log7" ||
  fail "the refusal does not say the disk shrank by 512 bytes"

echo "$test_name: PASS"
