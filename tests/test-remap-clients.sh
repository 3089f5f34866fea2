#!/usr/bin/env bash
# Proves that ordinary NBD clients work through the filter while
# sectors fail underneath: qemu-img convert/compare and nbdcopy copy
# to and from the export (data and zero runs both hit failing
# sectors), nbdinfo and qemu-img info show the export size, and the
# extents map (nbdinfo --map) reports a remapped sector as data even
# where the plugin's file is a hole.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-img nbdinfo nbdcopy

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
: >"$list"
ss=4096

start_server sock "$tmp/log" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"
size=$(export_size "$sock")

# 1. Both tools report the export size (smaller than the image).
[ "$size" -lt "$(stat -c %s "$disk")" ] || fail "export not smaller than image"
info=$(timeout 20 qemu-img info -f raw "$(uri "$sock")")
echo "$info" | grep -q "virtual size: .*($size bytes)" ||
  fail "qemu-img info does not show $size bytes: $info"

# A source image of exactly the export size: random data at the start
# (sectors 0..255), a hole (256..1023), data again (1024..1279), then
# a hole to the end.
src=$tmp/src.img
truncate -s "$size" "$src"
dd if=/dev/urandom of="$src" bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of="$src" bs=1M seek=4 count=1 conv=notrunc status=none

# Failing sectors in data (5, 1030) and in holes (300, 2000).
printf 'write 5\nwrite 300\nwrite 1030\nwrite 2000\n' >"$list"

# 2. qemu-img convert to the export, then compare.
timeout 60 qemu-img convert -n -f raw -O raw "$src" "$(uri "$sock")" ||
  fail "qemu-img convert to the export failed"
timeout 60 qemu-img compare -f raw -F raw "$src" "$(uri "$sock")" ||
  fail "qemu-img compare: the export differs from the source"
for s in 5 1030; do
  grep -q "sector $s remapped to spare" "$tmp/log" ||
    fail "sector $s (data) was not remapped"
done

# 3. qemu-img convert from the export.
timeout 60 qemu-img convert -f raw -O raw "$(uri "$sock")" "$tmp/out1.img" ||
  fail "qemu-img convert from the export failed"
cmp "$src" "$tmp/out1.img" || fail "qemu-img copy out differs"

# 4. nbdcopy to and from the export, with different data.
src2=$tmp/src2.img
truncate -s "$size" "$src2"
dd if=/dev/urandom of="$src2" bs=1M count=2 conv=notrunc status=none
dd if=/dev/urandom of="$src2" bs=64k seek=$((2000*ss/65536)) count=1 \
  conv=notrunc status=none
printf 'write 6\nwrite 400-401\nwrite 2000\nwrite 5000\n' >"$list"
timeout 60 nbdcopy "$src2" "$(uri "$sock")" || fail "nbdcopy to the export failed"
timeout 60 nbdcopy "$(uri "$sock")" "$tmp/out2.img" ||
  fail "nbdcopy from the export failed"
cmp "$src2" "$tmp/out2.img" || fail "nbdcopy round trip differs"
timeout 60 qemu-img compare -f raw -F raw "$src2" "$(uri "$sock")" ||
  fail "qemu-img compare after nbdcopy differs"
: >"$list"

# 5. Extents.  Sector 5000 lies in a hole of src2 and (if zeroed
#    through the filter) was remapped; write it explicitly to be sure.
hole_sector=5000
grep -q "sector $hole_sector remapped to spare" "$tmp/log" || {
  echo "write $hole_sector" >"$list"
  timeout 20 nbdcopy --synchronous "$src2" "$(uri "$sock")"
  : >"$list"
}
grep -q "sector $hole_sector remapped to spare" "$tmp/log" ||
  fail "sector $hole_sector was never remapped"
bytes_all "$disk" $((hole_sector*ss)) $ss 00 ||
  fail "sector $hole_sector of the image is not zero"
map=$(timeout 20 nbdinfo --map "$(uri "$sock")")
echo "$map" | head -20
type=$(echo "$map" | awk -v o=$((hole_sector*ss)) \
         '$1 <= o && o < $1 + $2 { print $3; exit }')
[ -n "$type" ] || fail "no extent covers sector $hole_sector"
[ $((type & 1)) -eq 0 ] ||
  fail "remapped sector $hole_sector is reported as a hole (type $type)"
# And its neighbourhood in the plugin is a hole (so the check means
# something): the sector before it is reported as a hole.
type=$(echo "$map" | awk -v o=$(((hole_sector-2)*ss)) \
         '$1 <= o && o < $1 + $2 { print $3; exit }')
echo "extent type of sector $((hole_sector-2)) (a hole in the file): $type"
stop_server "$sock"
echo "remapped:" $(grep -o "sector [0-9]* remapped" "$tmp/log" | awk '{print $2}')

echo "$test_name: PASS"
